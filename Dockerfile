# Two images, one stage each:
#
#   docker build --target proxy -t agentproxy:latest .   # agentproxy itself: what deploy/ runs
#   docker build -t agentapi-proxy:latest .              # the agent image of k8s mode (k8s_mode.image)
#
# Both run as non-root users so that their pods pass the "restricted" Pod
# Security Standard. The agent image holds Claude Code (the `claude` agent
# type); for other agent programs your teams use (codex, goose, aider, ...),
# build an image FROM the agent image that adds them.

FROM golang:1.24-bookworm AS agentapi
RUN CGO_ENABLED=0 GOBIN=/out go install github.com/coder/agentapi@v0.12.1

# Claude Code's native binary (Node installs it; the agent image does not need Node).
FROM node:22-bookworm-slim AS claude
RUN npm install --prefix /opt/claude --no-audit --no-fund @anthropic-ai/claude-code@2.1.328 \
 && cp "$(readlink -f /opt/claude/node_modules/.bin/claude)" /claude && /claude --version

# The proxy: agentproxy with its dependencies; `agentproxy serve` on port 8080.
FROM python:3.11-slim-bookworm AS proxy
COPY pyproject.toml README.md /src/
COPY agentproxy /src/agentproxy
COPY templates /src/templates
RUN pip install --no-cache-dir /src && rm -rf /src \
 && useradd --uid 65532 --no-create-home --home-dir /home/agentproxy --shell /usr/sbin/nologin agentproxy
USER 65532:65532
WORKDIR /home/agentproxy
# The root filesystem is read-only in deploy/: no bytecode written at run time.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
ENTRYPOINT ["agentproxy"]
CMD ["serve"]

# The agent: agentapi, Python, agentproxy's echo demo agent and Claude Code (the default target).
FROM python:3.11-slim-bookworm AS agent
COPY --from=claude /claude /usr/local/bin/claude
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
