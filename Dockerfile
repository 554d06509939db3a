# The agent image for k8s mode (k8s_mode.image): agentapi, Python and
# agentproxy's demo agent, running as a non-root user so that the pod passes
# the "restricted" Pod Security Standard. Add the agent programs your teams use
# (claude, codex, goose, aider, ...) in an image built FROM this one.
#
#   docker build -t agentapi-proxy:latest .

FROM golang:1.24-bookworm AS agentapi
RUN CGO_ENABLED=0 GOBIN=/out go install github.com/coder/agentapi@v0.12.1

FROM python:3.11-slim-bookworm
COPY --from=agentapi /out/agentapi /usr/local/bin/agentapi
COPY pyproject.toml README.md /src/
COPY agentproxy /src/agentproxy
COPY templates /src/templates
# The echo demo agent needs the standard library only: agentproxy's own
# dependencies (the service's) stay out of the agent image.
RUN pip install --no-cache-dir --no-deps /src && rm -rf /src \
 && useradd --uid 1000 --create-home --home-dir /home/agent agent \
 && mkdir -p /home/agent/work && chown -R 1000:1000 /home/agent
USER 1000:1000
WORKDIR /home/agent/work
EXPOSE 3284
ENTRYPOINT ["agentapi"]
