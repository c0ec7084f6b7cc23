# The StreamFlow image: the `streamflow` CLI (run, agent, events...), Node.js for CWL
# JavaScript expressions, and the examples at /app/examples (compose.yaml runs them).
#   docker build -t streamflow:local .
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamflow ./streamflow
COPY actors ./actors
COPY events ./events
RUN pip install --no-cache-dir . \
 && useradd --create-home --uid 1000 streamflow \
 && mkdir -p /work \
 && chown streamflow /work
COPY examples ./examples

USER streamflow
# Jobs run under /work (a volume shared by the agents and the client in compose.yaml).
VOLUME ["/work"]
ENTRYPOINT ["streamflow"]
CMD ["--help"]
