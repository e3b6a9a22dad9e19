#!/usr/bin/env bash
# After `terraform apply`: is what Terraform reported actually serving? Every function ACTIVE, every
# consumer subscription dead-lettering where Terraform says, every scheduler job present. With
# _SMOKE_EXTRACT=true it also runs the first table group's job now (a real extraction cycle).
# Reads infra/outputs.json (terraform output -json); substitutions arrive as environment variables.
set -euo pipefail
project="${_PROJECT_ID:?}"
region="${_REGION:?}"
outputs="infra/outputs.json"
failures=0

value() { python3 -c "import json,sys; print('\n'.join(f'{k} {v}' for k, v in json.load(open('$outputs'))['$1']['value'].items()))"; }

while read -r name _url; do
  state="$(gcloud functions describe "$name" --gen2 --region="$region" --project="$project" --format='value(state)')"
  echo "function $name: $state"
  [[ "$state" == "ACTIVE" ]] || failures=$((failures + 1))
done < <(value functions)

while read -r subscription dead_letter_topic; do
  actual="$(gcloud pubsub subscriptions describe "$subscription" --project="$project" --format='value(deadLetterPolicy.deadLetterTopic)')"
  echo "subscription $subscription dead-letters to: $actual"
  [[ "$actual" == "$dead_letter_topic" ]] || failures=$((failures + 1))
done < <(value subscriptions)

first_job=""
while read -r group _tables; do
  state="$(gcloud scheduler jobs describe "extract-$group" --location="$region" --project="$project" --format='value(state)')"
  echo "scheduler job extract-$group: $state"
  [[ "$state" == "ENABLED" || "$state" == "PAUSED" ]] || failures=$((failures + 1))
  first_job="${first_job:-extract-$group}"
done < <(value scheduler_jobs)

if [[ "${_SMOKE_EXTRACT:-false}" == "true" && -n "$first_job" ]]; then
  gcloud scheduler jobs run "$first_job" --location="$region" --project="$project"
  echo "ran $first_job: follow it with gcloud logging read 'labels.table:*' --project=$project"
fi

if (( failures )); then
  echo "smoke check: $failures problem(s)" >&2
  exit 1
fi
echo "smoke check passed"
