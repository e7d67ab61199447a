#!/usr/bin/env bash
# GPU check: calibrate this CUDA GPU into a profile, then validate the bundled models on it
# (one process each) against that profile: training steps, then real generations (TTFT and
# TPOT, against the calibrated profile and the bundled sourced one), and write a summary table.
#
#     bash benchmarks/gpu_validation.sh OUTDIR
#
# Needs one CUDA GPU and the package installed (README set-up). Budget: under 8 minutes on an
# H100/H200-class GPU; every step has its own timeout so one hang cannot eat the budget.
# Outputs under OUTDIR: gpu.yaml (the calibrated profile), <model>.json (training validations),
# infer-<case>.json (generation validations), op-<model>.md (op-by-op profiles),
# summary.md (predicted against measured per model and component), log.txt.
set -uo pipefail

OUT="${1:?usage: gpu_validation.sh OUTDIR}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: > "$LOG"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" >>"$LOG" 2>&1 || {
    echo "no CUDA device: nothing to check" | tee -a "$OUT/summary.md"; exit 2; }
nvidia-smi >>"$LOG" 2>&1 || true

echo "== calibrate" | tee -a "$LOG"
timeout 240 archcost calibrate --device cuda -o "$OUT/gpu.yaml" --json >"$OUT/calibration.json" 2>>"$LOG" \
    || echo "calibrate failed (see log.txt)" | tee -a "$LOG"
PROFILE="$OUT/gpu.yaml"
[ -f "$PROFILE" ] || PROFILE=h100-sxm

run() {  # name, then archcost validate arguments
    local name="$1"; shift
    echo "== validate $name" | tee -a "$LOG"
    timeout 90 archcost validate "$@" --device cuda --hardware "$PROFILE" --steps 10 --warmup 3 \
        --json -o "$OUT/$name.json" >/dev/null 2>>"$LOG" || echo "$name failed (see log.txt)" | tee -a "$LOG"
}
run seed_mlp  models/seed_mlp.py -s 1 --plan "mbs=256,gbs=256"
run gpt2      models/gpt2.py -s 1024 --plan "mbs=8,gbs=8" --dtype bf16
run llama     models/llama.py --set layers=8 --set hidden=2048 --set heads=16 --set kv_heads=4 \
              --set ffn=5632 --set vocab=32000 -s 2048 --plan "mbs=4,gbs=4" --dtype bf16
run moe       models/moe.py --set preset=tiny -s 1024 --plan "mbs=8,gbs=8" --dtype bf16
run vit       models/vit.py -s 1 --plan "mbs=64,gbs=64" --dtype bf16
run bert      models/bert.py -s 512 --plan "mbs=16,gbs=16" --dtype bf16

# generation: the prefill and decode steps of a 1.1B llama and GPT-2 small, decode at batch 1
# (launch-bound in eager PyTorch) and at batch 32 (weights read once for 32 tokens)
SOURCED="${GPU_PROFILE:-h200}"  # the bundled profile of this GPU, sourced figures
LLAMA=(models/llama.py --set layers=16 --set hidden=2048 --set heads=16 --set kv_heads=4
       --set ffn=5632 --set vocab=32000)
infer() {  # name, profile, then archcost validate arguments
    local name="$1" profile="$2"; shift 2
    echo "== validate --infer $name on $profile" | tee -a "$LOG"
    timeout 90 archcost validate "$@" --infer --device cuda --hardware "$profile" --steps 3 \
        --warmup 1 --json -o "$OUT/infer-$name.json" >/dev/null 2>>"$LOG" \
        || echo "infer-$name failed (see log.txt)" | tee -a "$LOG"
}
infer llama-b1       "$PROFILE" "${LLAMA[@]}" --dtype bf16 -b 1 -i 1024 -n 64
infer llama-b32      "$PROFILE" "${LLAMA[@]}" --dtype bf16 -b 32 -i 512 -n 64
infer gpt2-b1        "$PROFILE" models/gpt2.py --dtype bf16 -b 1 -i 512 -n 64
infer gpt2-b32       "$PROFILE" models/gpt2.py --dtype bf16 -b 32 -i 512 -n 64
infer llama-b1-src   "$SOURCED" "${LLAMA[@]}" --dtype bf16 -b 1 -i 1024 -n 64
infer llama-b32-src  "$SOURCED" "${LLAMA[@]}" --dtype bf16 -b 32 -i 512 -n 64

# op by op, the two training steps the engine misses most (host, kernels, predicted per op)
for m in gpt2 moe; do
    echo "== op profile $m" | tee -a "$LOG"
    set_args=(); [ "$m" = moe ] && set_args=(--set preset=tiny)
    timeout 90 python benchmarks/op_profile.py "models/$m.py" "${set_args[@]}" -s 1024 --mbs 8 \
        --dtype bf16 --device cuda --hardware "$PROFILE" -o "$OUT/op-$m.md" >/dev/null 2>>"$LOG" \
        || echo "op profile $m failed (see log.txt)" | tee -a "$LOG"
done

python - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| model | component | predicted | measured | error |")
print("|---|---|---:|---:|---:|")
errs: dict[str, list[float]] = {}
for f in sorted(out.glob("*.json")):
    if f.name == "calibration.json":
        continue
    doc = json.loads(f.read_text())
    if "components" not in doc.get("validation", {}):
        continue
    for c in doc["validation"]["components"]:
        err = c["error"]
        if c["name"] in ("step_time", "ttft", "tpot") and err is not None:
            errs.setdefault(c["name"], []).append(abs(err))
        fmt = (lambda v: f"{v * 1e3:.2f} ms") if c["unit"] == "s" else (lambda v: f"{v / 2**20:.1f} MiB")
        print(f"| {f.stem} | {c['name']} | {fmt(c['predicted'])} | {fmt(c['measured'])} | "
              f"{'' if err is None else f'{100 * err:+.1f}%'} |")
for name, e in errs.items():
    print(f"\n{name}: mean absolute error {100 * sum(e) / len(e):.1f}%, max {100 * max(e):.1f}% "
          f"over {len(e)} runs")
PY
