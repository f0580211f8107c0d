#!/usr/bin/env bash
# Worked example for data scientists: log traffic on the embedded stack, then evaluate
# another policy offline from the archive, without touching production.
#
#   1. traffic    `streamrec demo`: embedded Kafka + Postgres, every worker, a synthetic
#                 catalog, user histories, recommendation requests answered by the serve
#                 worker and clicks on some answers; the archive worker writes it all to
#                 Avro files under the home
#   2. replay     a time range of the logged responses, exported to Parquet
#   3. replay     the logged requests again through another policy configuration
#                 (counterfactual responses stored beside the originals)
#   4. A/B        (AB=1) raw vs LLM-enriched embeddings on a frozen MovieLens query set
#   5. evaluate   production vs that policy: metrics by warmth bucket, route and
#                 llm_used, IPS/SNIPS (and the A/B when run), a self-contained HTML report
#
# Run it from anywhere:  examples/evaluate_policies.sh   (see examples/README.md)
# Knobs (environment):   POLICY=no-llm ENGINE=popularity ITEMS=300 USERS=150 REQUESTS=200
#                        LLM=simulated|none|endpoint OUT=examples/out SKIP_TRAFFIC=1
#                        SINCE=/UNTIL= (ISO-8601 or epoch ms) STREAMREC="path/to/streamrec"
#                        AB=1 AB_LLM=auto|simulated|endpoint|none AB_REPORT=ab.json
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${OUT:-examples/out}
POLICY=${POLICY:-no-llm}
ENGINE=${ENGINE:-popularity}
ITEMS=${ITEMS:-300}
USERS=${USERS:-150}
REQUESTS=${REQUESTS:-200}
LLM=${LLM:-simulated}
SKIP_TRAFFIC=${SKIP_TRAFFIC:-0}
AB=${AB:-0}
AB_LLM=${AB_LLM:-auto}
if [[ -z "${STREAMREC:-}" ]]; then
  if [[ -x .venv/bin/streamrec ]]; then STREAMREC=.venv/bin/streamrec; else STREAMREC=streamrec; fi
fi
read -ra SR <<<"$STREAMREC"

# Everything the example makes stays under $OUT: its own home (Postgres data, archive,
# logs) and its own topic names, so it never mixes with another stack's data.
export STREAMREC_HOME=${STREAMREC_HOME:-$OUT/home}
export STREAMREC_TOPIC_PREFIX=${STREAMREC_TOPIC_PREFIX:-example.}
# the counterfactual engine re-reads each user's events before every logged request
export STREAMREC_ARCHIVE_USER_EVENTS=true
# the demo's users click within a second of an answer and the demo closes attribution
# windows after 10 s; evaluate judges relevance with the same window
export STREAMREC_ATTRIBUTION_WINDOW_S=${STREAMREC_ATTRIBUTION_WINDOW_S:-10}
ARCHIVE="$STREAMREC_HOME/archive"
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m (%ss so far)\n' "$*" "$SECONDS"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [[ "$SKIP_TRAFFIC" != 1 ]]; then
  step "1. traffic: embedded stack, workers, synthetic workload, archive"
  # a fresh home each run: the embedded broker forgets its topics when it stops, so
  # state kept in Postgres under old offsets must not meet new messages
  if [[ -d "$STREAMREC_HOME" ]]; then
    if [[ ! -f "$STREAMREC_HOME/.example-home" ]]; then
      echo "refusing to wipe $STREAMREC_HOME: not made by this example (no .example-home)" >&2
      exit 2
    fi
    rm -rf "$STREAMREC_HOME"
  fi
  mkdir -p "$STREAMREC_HOME" && touch "$STREAMREC_HOME/.example-home"
  SINCE=${SINCE:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
  run "${SR[@]}" demo --items "$ITEMS" --users "$USERS" --requests "$REQUESTS" --llm "$LLM"
  UNTIL=${UNTIL:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
fi

RESPONSES="${STREAMREC_TOPIC_PREFIX}rec.responses"
if ! compgen -G "$ARCHIVE/$RESPONSES/*/*.avro" >/dev/null; then
  echo "no logged responses under $ARCHIVE/$RESPONSES: the serving worker answered no" \
    "request (is it part of this build? \`streamrec worker serve\`)" >&2
  exit 1
fi

step "2. replay a range of the logged responses from the archive, to Parquet"
RANGE=()
[[ -n "${SINCE:-}" ]] && RANGE+=(--since "$SINCE")
[[ -n "${UNTIL:-}" ]] && RANGE+=(--until "$UNTIL")
run "${SR[@]}" replay rec.responses --source archive "${RANGE[@]}" --export "$OUT/responses.parquet"

step "3. counterfactual: the logged requests through policy '$POLICY' (engine $ENGINE)"
run "${SR[@]}" replay rec.requests --source archive --policy "$POLICY" --engine "$ENGINE" --overwrite

if [[ "$AB" == 1 ]]; then
  step "4. enrichment A/B on MovieLens: raw vs enriched embeddings (LLM: $AB_LLM)"
  run "${SR[@]}" ab-enrich --llm "$AB_LLM" --tag-queries 60 --conversations 30 --max-items 600 \
    --json "$OUT/ab.json"
  AB_REPORT="$OUT/ab.json"
fi
EXTRA=()
[[ -n "${AB_REPORT:-}" ]] && EXTRA+=(--ab "$AB_REPORT")

step "5. evaluate production vs '$POLICY'"
run "${SR[@]}" evaluate --policy "$POLICY" --json "$OUT/report.json" --html "$OUT/report.html" \
  "${EXTRA[@]}"

REPORT="$(cd "$(dirname "$OUT/report.html")" && pwd)/report.html"
printf '\n\033[1mdone in %ss.\033[0m The report: %s\n' "$SECONDS" "$REPORT"
echo "open it in a browser (e.g. xdg-open \"$REPORT\"); JSON beside it; the range export:" \
  "$OUT/responses.parquet; the archive: $ARCHIVE"
