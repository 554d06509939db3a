"""The benchmarks' smoke tests: each benchmark run once, tiny, to see that it works and reports
its table (figures are not checked), and the unit tests of the benchmarks' own parts.

``bin/just bench-smoke`` runs them, in one process, after installing what the benchmarks compare
against (the Go agentapi-proxy, configurable-http-proxy, wrk, socat); ``bin/just test`` (CI) runs
that recipe. The unit tier needs none of those.
"""
