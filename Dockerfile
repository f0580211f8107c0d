# streamrec workers for real deployments (see docker-compose.yml).
# torch is installed from the CPU wheel index first, so sentence-transformers cannot
# pull a CUDA build; everything else is pinned by constraints.txt.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

RUN useradd --create-home --uid 10001 streamrec
WORKDIR /app

COPY constraints.txt pyproject.toml README.md ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

COPY schemas ./schemas
COPY migrations ./migrations
COPY streams ./streams
COPY recsys ./recsys
COPY workers ./workers
COPY jobs ./jobs
COPY stack ./stack
COPY cli ./cli
COPY demo ./demo
COPY dashboard ./dashboard
RUN grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
    && pip install -c /tmp/constraints.txt . \
    && pip check

USER streamrec
ENV STREAMREC_HOME=/home/streamrec/.streamrec
ENTRYPOINT ["streamrec"]
CMD ["worker", "serve"]
