# One image for every process of a deployment:
#   code location (Dagster gRPC server):  dagster api grpc -m pipelines.definitions -h 0.0.0.0 -p 4000
#   runs (K8sRunLauncher starts them from the code location's image): dagster api execute_run …
#   webhook receiver (the default command):  spend-receiver --host 0.0.0.0 --port 4012
# There is no ENTRYPOINT: Kubernetes, Dagster's Helm chart and K8sRunLauncher give the whole
# command as container args. No HEALTHCHECK either, since it would apply to both roles; the
# receiver's probes (GET /healthz on 4012) are in deploy/kubernetes/receiver-deployment.yaml.
# Nothing secret is built in: every credential comes from the environment at run time.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/spend

# The pinned dependencies first, in a layer of their own: it is rebuilt only when the lock
# changes, not on every change to the code.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Then the project, with nothing resolved again (everything it needs is in the lock).
COPY pyproject.toml README.md workspace.yaml ./
COPY pipelines ./pipelines
COPY assets ./assets
COPY resources ./resources
COPY receiver ./receiver
COPY demo ./demo
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info

# An unprivileged user with a numeric id, so Kubernetes can verify runAsNonRoot. It may write
# in two places: its home directory, where processes start (DuckDB spills a query that
# outgrows memory to .tmp/ under the working directory), and DAGSTER_HOME of Dagster's Helm
# chart, made here because the chart mounts only dagster.yaml into it and a directory the
# runtime creates for that mount would be root's. The image holds no data directory:
# SPEND_DATA_DIR is object storage (s3://, gs://, az://).
RUN groupadd --system --gid 10001 spend \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/spend \
        --shell /usr/sbin/nologin spend \
    && install -d -o 10001 -g 10001 /opt/dagster/dagster_home
USER 10001:10001
WORKDIR /home/spend

# 4000: the code location's gRPC server; 4012: the receiver.
EXPOSE 4000 4012

CMD ["spend-receiver", "--host", "0.0.0.0", "--port", "4012"]
