#!/bin/sh
# Creates every GridHub topic that is missing, with replication factor 3 and min.insync.replicas=2 set on the
# topic (with acks=all, a write survives one broker down and is refused rather than under-replicated with two
# down). Runs in the apache/kafka image: the compose `topics` service and the Kubernetes `gridhub-topics` Job
# (which embeds this same file in its ConfigMap). Safe to run again: existing topics are left as they are.
#
# The table mirrors schemas/catalogue.py (CATALOGUE, then INTERNAL_TOPICS): name, partitions, cleanup.policy,
# retention.ms ("-": compacted only, no time retention). tests/deploy/test_catalogue_agreement.py fails when
# they differ; `gridhub topics list` prints the catalogue.
set -eu
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP (host:port,...)}"
PREFIX="${GRIDHUB_TOPIC_PREFIX-gridhub.}"
TOPICS="${KAFKA_HOME:-/opt/kafka}/bin/kafka-topics.sh"
REPLICATION_FACTOR=3
MIN_INSYNC_REPLICAS=2

create() {
  # create NAME PARTITIONS CLEANUP_POLICY RETENTION_MS|-
  if [ "$4" = "-" ]; then
    set -- "$1" "$2" --config "cleanup.policy=$3"
  else
    set -- "$1" "$2" --config "cleanup.policy=$3" --config "retention.ms=$4"
  fi
  topic="$PREFIX$1"
  partitions="$2"
  shift 2
  "$TOPICS" --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists --topic "$topic" \
    --partitions "$partitions" --replication-factor "$REPLICATION_FACTOR" \
    --config "min.insync.replicas=$MIN_INSYNC_REPLICAS" "$@"
  echo "ready   $topic"
}

#      name                  partitions cleanup retention.ms
create raw.12345               6  delete         7776000000
create raw.110                 6  delete         7776000000
create raw.wechat              6  delete         7776000000
create raw.petition            6  delete         7776000000
create raw.gridapp             6  delete         7776000000
create events.normalised       6  delete         7776000000
create reports.index           6  compact        -
create events.supplements      6  delete         7776000000
create events.self-resolved    6  delete         31536000000
create events.deadletter       6  delete         31536000000
create tasks.dispatched        6  delete         31536000000
create cases.links             6  delete         31536000000
create router.commands         6  delete         31536000000
create tasks.updates           6  delete         31536000000
create tasks.summons           6  delete         31536000000
create tasks.status            6  compact        -
create sla.alerts              6  delete         7776000000
create deliveries.results      6  delete         7776000000
create deliveries.alerts       6  delete         7776000000
create config.dutylist         1  compact        -
create notifier.endpoints      1  compact        -
# The router's own topics (schemas.catalogue.INTERNAL_TOPICS)
create router.cases            6  delete         604800000
create router.open-cases       6  compact,delete 172800000
create router.flows            6  delete         31536000000
create router.flow-state       6  compact        -

"$TOPICS" --bootstrap-server "$KAFKA_BOOTSTRAP" --list | grep -c "^$PREFIX" | sed 's/^/topics with the prefix: /'
