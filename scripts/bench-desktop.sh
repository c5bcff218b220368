#!/usr/bin/env bash
# Desktop app benchmark: launches the real app under Xvfb (through the window test, which
# times WebDriver session start → the task box is interactive, and sums the PSS of the app's
# processes when idle) RUNS times and prints the medians. Usage: scripts/bench-desktop.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
launch=(); mem=()
for i in $(seq 1 "$runs"); do
  out=$(cargo test --quiet --test desktop_window -- --nocapture 2>&1)
  launch+=("$(grep -o 'launch to interactive window: [0-9]*' <<<"$out" | grep -o '[0-9]*$')")
  mem+=("$(grep -o 'PSS) of the app.s processes: [0-9]*' <<<"$out" | grep -o '[0-9]*$')")
  echo "run $i: launch ${launch[-1]} ms, idle memory ${mem[-1]} MiB"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "median launch to interactive window: $(median "${launch[@]}") ms"
echo "median idle memory (PSS, app + WebKit processes): $(median "${mem[@]}") MiB"
