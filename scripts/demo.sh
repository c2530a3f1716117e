#!/usr/bin/env bash
# README command 1, the main job: plan a real model, then build the tiny CPU spec into a
# training project and train it on this machine's CPU (2 processes, 300 steps, a few minutes)
# on Python's own standard-library sources; then fine-tune that model with LoRA on
# prompt/response records (specs/tiny-cpu-lora.yaml, 200 steps), compare its held-out
# response loss with the base's, and evaluate it (evaluate.py: perplexity, BLEU, ROUGE,
# calibration, bias, toxicity, a zero-shot lm-eval task). Safe to run again: the prepared data is kept, training
# starts over. DEMO_RESUME=1 keeps the checkpoints instead (the runs resume).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RUN=runs/tiny-cpu
FT=runs/tiny-cpu-lora  # specs/tiny-cpu-lora.yaml reads its base from $RUN/out/checkpoints

step() { printf '\n== %s\n' "$*" >&2; }

step "set-up (torch CPU build, deepspeed, llmspec)"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

step "plan a real model: llmspec plan specs/llama2-7b.yaml"
"$PY" -m llmspec plan specs/llama2-7b.yaml

step "build the tiny CPU spec: llmspec build specs/tiny-cpu.yaml -o $RUN"
"$PY" -m llmspec build specs/tiny-cpu.yaml -o "$RUN"

fresh() {  # everything of a run but its prepared data: the demo shows whole runs each time
  if [[ "${DEMO_RESUME:-0}" != 1 && -d "$1/out" ]]; then
    find "$1/out" -mindepth 1 -maxdepth 1 ! -name data -exec rm -rf {} +
  fi
}
fresh "$RUN"

step "train: bash $RUN/launch.sh (prepares the data on first use)"
PYTHON="$PY" bash "$RUN/launch.sh"

step "summary"
"$PY" - "$RUN" <<'EOF'
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
records = [json.loads(line) for line in (run / "out/metrics.jsonl").read_text().splitlines()]
losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
evals = [(r["step"], r["val_loss"], r["val_perplexity"]) for r in records if "val_loss" in r]
(first_step, first), (last_step, last) = losses[0], losses[-1]
print(f"training loss: {first:.3f} at step {first_step} -> {last:.3f} at step {last_step}")
if evals:
    step, val_loss, ppl = evals[-1]
    print(f"validation at step {step}: loss {val_loss:.3f}, perplexity {ppl:.1f}")
speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
if speeds:
    print(f"throughput: {sorted(speeds)[len(speeds) // 2]:,.0f} tokens/s (median of logged steps)")
print(f"outputs: {run}/out/ (metrics.jsonl, checkpoints/, data/); project: {run}/")
if not last < first:
    sys.exit("error: the loss did not fall")
EOF

step "fine-tune it with LoRA: llmspec build specs/tiny-cpu-lora.yaml -o $FT; bash $FT/launch.sh"
"$PY" -m llmspec build specs/tiny-cpu-lora.yaml -o "$FT"
fresh "$FT"
PYTHON="$PY" bash "$FT/launch.sh"

step "fine-tuning summary"
"$PY" - "$FT" <<'EOF'
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
records = [json.loads(line) for line in (run / "out/metrics.jsonl").read_text().splitlines()]
evals = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
(_, base), (step, tuned) = evals[0], evals[-1]
print(f"held-out response loss: base {base:.3f} -> {tuned:.3f} after {step} LoRA steps")
params = json.loads((run / "plan.json").read_text())["params"]
print(f"trained {params['trainable']:,} of {params['total']:,} parameters; adapters in {run}/out/adapters/")
if not tuned < base:
    sys.exit("error: fine-tuning did not lower the response loss")
EOF

step "evaluate the fine-tune: python $FT/evaluate.py (out/eval.json, out/eval/report.md)"
(cd "$FT" && "$PY" evaluate.py)
