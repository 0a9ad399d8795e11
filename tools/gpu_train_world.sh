#!/usr/bin/env bash
# Continue the synthetic world's generator on a GPU, then re-fit the inversion encoder to it, inside a fixed time
# budget, and pack the new weights, model cards and training logs into one archive.
#
#   GEN_MINUTES=5 ENC_MINUTES=2 bash tools/gpu_train_world.sh            # on the lent GPU machine ($OUT set there)
#   GEN_CHANNELS='{"4":64,"8":64,"16":64,"32":64,"64":48}' CLIP_MINUTES=5 ...  # widen G; CLIP legs alongside
#   DEVICE=cpu GEN_MINUTES=0.5 ENC_MINUTES=0.3 OUT=/tmp/o bash tools/gpu_train_world.sh   # a dry run on a CPU
#
# Why these two: the generator is the world's longest pole (cards/generator.md: blurred, its coverage gates fail on
# 2 CPU cores after 240k images) and the encoder must be re-fitted to whatever generator ships. The other networks
# train well enough on a CPU. Each network trains through the project's own resumable trainer
# (`python -m zoo.synthface.train NETWORK --device cuda`); the data are rendered on the machine's CPU cores.
#
# Steps are sized to the budget: a short timing run (TIMING_STEPS steps in a scratch run directory) measures the
# steady seconds per step (after its first fifth), then the real run takes minutes * 60 / seconds-per-step steps,
# so its cosine schedule ends on time (plus the one-off costs: the generator's mapping regression took 40 s on an
# H100). The generator starts from the committed weights (init_from "weights") at batch 512 with the "features"
# recipe, the loss weighted around the eyes and mouth (REGION_WEIGHT, the mouth MOUTH_WEIGHT) and over the hair
# (HAIR_WEIGHT), and the centred mouth
# discriminator (MOUTH_GAN); the encoder is fitted from scratch in two legs: a regression of W* of the renders'
# parameters, then the image loss (and e4e's identity loss when ENC_ID_WEIGHT > 0).
#
# The batches are rendered on the GPU (render_device "model") when a first check finds the GPU's renders equal to the
# CPU's; otherwise on the CPU cores. The generator's results are packed into $OUT/generator.tgz as soon as it is done,
# so that a call cut off during the encoder still brings them back.
#
# GEN_CHANNELS widens the generator first (zoo/stylegan2/widen.py: the same images, new channels free to learn).
# CLIP_MINUTES > 0 also continues the two CLIPs (the smile recipe of cards/clip.md and cards/judge_clip.md at
# CLIP_BATCH) in the background, each on its own CLIP_THREADS CPU cores for rendering, packed into clip.tgz and
# judge_clip.tgz as each finishes.
#
# The generator and encoder need only torch, safetensors, numpy, tqdm and onnx: the machines' image has them. The
# CLIPs need open_clip: wheels in .whl/ (carried) are installed into /tmp/site first when the folder is there.
# Back here: unpack with `tar xzf world.tgz` in the repository root, read the cards, run the tests, commit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
DEVICE=${DEVICE:-cuda}
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:?set OUT to the folder the archive goes to}
GEN_MINUTES=${GEN_MINUTES:-5}
ENC_MINUTES=${ENC_MINUTES:-2}
GEN_BATCH=${GEN_BATCH:-512}
REGION_WEIGHT=${REGION_WEIGHT:-4}
MOUTH_WEIGHT=${MOUTH_WEIGHT:-16}
MOUTH_GAN=${MOUTH_GAN:-0.15}  # the mouth discriminator's weight (legs M-Q, cards/generator.md); 0 turns it off
HAIR_WEIGHT=${HAIR_WEIGHT:-4}  # the hair pixels' extra loss weight (legs Z-Z2, cards/generator.md); 0 turns it off
ENC_IMAGE_SHARE=${ENC_IMAGE_SHARE:-0.25}  # the encoder's second leg (image loss) gets this share of ENC_MINUTES
ENC_ID_WEIGHT=${ENC_ID_WEIGHT:-0.5}  # e4e identity loss in the image leg (the committed leg 6, cards/encoder.md)
ENC_BATCH=${ENC_BATCH:-128}
TIMING_STEPS=${TIMING_STEPS:-40}
RUN_DIR=${RUN_DIR:-runs/gpu-train}
GEN_CHANNELS=${GEN_CHANNELS:-}  # empty: the committed widths
CLIP_MINUTES=${CLIP_MINUTES:-0}
CLIP_BATCH=${CLIP_BATCH:-256}
CLIP_THREADS=${CLIP_THREADS:-1}
CLIP_LR=${CLIP_LR:-0.0004}
# 8: carry both CLIPs to 8-pixel patches first (train_clip.finer_patches; cards/judge_clip.md, "Finer patches"); give it
# minutes and CLIP_LR=0.0008. A better zero-shot reader, not a better guide: an 8,000-step CPU run of the guide CLIP's
# leg read smiles at 0.935 and left StyleCLIP optimisation at 0.495 (docs/results/styleclip-guidance.md)
CLIP_PATCH=${CLIP_PATCH:-16}
# > 0: the guide CLIP's leg (never the judge's) adds the edit-ranking term at this weight, with CLIP_RANK_DOMAINS of
# its pairs domain pairs (zoo/synthface/edit_ranking.py; candidate l of cards/clip.md: 10 and 0.5 lifted the mapper
# given steps and cost NADA); the adversary runs on the committed generator, so train no generator beside it
CLIP_RANK=${CLIP_RANK:-0}
CLIP_RANK_DOMAINS=${CLIP_RANK_DOMAINS:-0.5}
mkdir -p "$OUT" "$RUN_DIR"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee "$RUN_DIR/gpu.txt" || true

# steps_for NETWORK MINUTES THREADS ARGS...: time TIMING_STEPS steps in a scratch run directory, print the steps
# that fit
steps_for() {
  local network=$1 minutes=$2 threads=$3; shift 3
  rm -rf "$RUN_DIR/timing-$network"
  python -m zoo.synthface.train "$network" --device "$DEVICE" --threads "$threads" --no-export \
    --run-dir "$RUN_DIR/timing-$network" --steps "$TIMING_STEPS" --checkpoint-every 100000 "$@" \
    > "$RUN_DIR/timing-$network.json"
  python - "$RUN_DIR/timing-$network.json" "$minutes" "$TIMING_STEPS" <<'EOF'
import json, sys
result = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
# the steady rate (after the first fifth of the steps): the first steps' one-off costs made the 2026-11-27 runs
# stop at about half their budget
per_step = result.get("steady_s_per_step") or result["elapsed_s"] / int(sys.argv[3])
print(max(int(sys.argv[3]), int(float(sys.argv[2]) * 60 / per_step)))
EOF
}

# render on the model's device only where it draws what the CPU draws (all domains, 64 faces each)
RENDER_DEVICE=$(python - "$DEVICE" <<'EOF' 2>&1 | tee "$RUN_DIR/render_check.txt" | tail -n 1
import sys, torch
from zoo.synthface.domains import DOMAIN_NAMES
from zoo.synthface.params import sample_params
from zoo.synthface.render import render
device = sys.argv[1]
try:
    worst = max((render(p, device=device).cpu() - render(p)).abs().max().item()
                for p in (sample_params(64, seed=7, domain=d) for d in DOMAIN_NAMES))
    print(f"render on {device}: largest difference to the CPU {worst:.2e}")
    print('"model"' if worst < 1e-2 else '"cpu"')
except Exception as error:  # any failure: keep rendering on the CPU
    print(f"render on {device} failed: {error!r}")
    print('"cpu"')
EOF
)
echo "rendering on: $RENDER_DEVICE"

# clip_leg NAME ARGS...: one CLIP continued from its committed weights, sized to CLIP_MINUTES, packed when done
clip_leg() {
  local name=$1; shift
  local steps
  steps=$(steps_for "$name" "$CLIP_MINUTES" "$CLIP_THREADS" "$@")
  echo "$name: $steps steps of batch $CLIP_BATCH on $DEVICE"
  rm -rf "$RUN_DIR/$name"
  python -m zoo.synthface.train "$name" --device "$DEVICE" --threads "$CLIP_THREADS" --run-dir "$RUN_DIR" \
    --steps "$steps" "$@" > "$RUN_DIR/$name.out" 2>&1 || true  # gates failing exits 1
  tar czf "$OUT/$name.tgz" zoo/synthface/weights/"$name".* zoo/synthface/cards/"$name".md "$RUN_DIR/$name.out" \
    "$RUN_DIR/$name/log.jsonl" 2>/dev/null || echo "$name: nothing to pack, see $RUN_DIR/$name.out"
}
# the third runs' smile recipe (cards/clip.md, cards/judge_clip.md) with a new data seed and a larger batch
CLIP_COMMON=(init_from='"weights"' "batch_size=$CLIP_BATCH" warmup=20 "lr=$CLIP_LR" prompt_set_weight=1.0 prompt_set_from=0
             p_minimal_batch=0.3 minimal_from=0 p_attribute_from=0 'image_aux_heads=["smile"]' image_aux_weight=6.0
             image_aux_smile_regression=3.0)
CLIP_MODEL=(); JUDGE_MODEL=()
if [ "$CLIP_PATCH" != 16 ]; then
  CLIP_MODEL=("model=\"synthface-clip-p$CLIP_PATCH\""); JUDGE_MODEL=("model=\"synthface-judge-clip-p$CLIP_PATCH\"")
fi
if [ "$CLIP_RANK" != 0 ]; then
  CLIP_MODEL+=("edit_rank_weight=$CLIP_RANK" "edit_rank_domain_share=$CLIP_RANK_DOMAINS")
fi
if [ "$CLIP_MINUTES" != 0 ]; then
  clip_leg clip --set "${CLIP_COMMON[@]}" "${CLIP_MODEL[@]}" seed=20 hard_batch_from=0 'minimal_attributes=["smile"]' \
    'prompt_set_attribute_weights={"smile": 5.0}' &
  clip_leg judge_clip --set "${CLIP_COMMON[@]}" "${JUDGE_MODEL[@]}" seed=22 'minimal_attributes=["smile","lipstick"]' \
    'prompt_set_attribute_weights={"smile": 5.0, "lipstick": 2.0}' &
fi

# finished NETWORK: stop the script when a training crashed (failing gates still export and are kept)
finished() {
  grep -q '"finished": true' "$RUN_DIR/$1.out" && return
  echo "$1: training did not finish, see $RUN_DIR/$1.out"
  wait  # the CLIP legs, if any, still pack their archives
  exit 1
}

# the "features" recipe (cards/generator.md): the synthesis learns from a teacher W* linear in the renderer's
# parameters, re-fitted to the committed mapping (which regresses such a W* already, so a short mapping re-fit)
GEN_ARGS=(--set 'init_from="weights"' "batch=$GEN_BATCH" warmup=100 "render_device=$RENDER_DEVICE"
          'w_target="features"' mapping_mix=0.5 mapping_fit_steps=5000 "region_weight=$REGION_WEIGHT"
          "mouth_weight=$MOUTH_WEIGHT" "mouth_gan_weight=$MOUTH_GAN" mouth_gan_centre=true "hair_weight=$HAIR_WEIGHT")
if [ -n "$GEN_CHANNELS" ]; then GEN_ARGS+=("channels=$GEN_CHANNELS"); fi  # (a bare `[ ] &&` reads as a failure)
# (timed without the one-off mapping regression before step 0: it is not a per-step cost)
GEN_STEPS=$(steps_for generator "$GEN_MINUTES" "$THREADS" "${GEN_ARGS[@]}" mapping_fit_steps=0)
echo "generator: $GEN_STEPS steps of batch $GEN_BATCH on $DEVICE"
rm -rf "$RUN_DIR/generator"
python -m zoo.synthface.train generator --device "$DEVICE" --threads "$THREADS" --run-dir "$RUN_DIR" \
  --steps "$GEN_STEPS" "${GEN_ARGS[@]}" 2>&1 | tee "$RUN_DIR/generator.out" || true  # gates failing exits 1
finished generator
tar czf "$OUT/generator.tgz" zoo/synthface/weights/generator.* zoo/synthface/cards/generator.md \
  "$RUN_DIR/gpu.txt" "$RUN_DIR/render_check.txt" "$RUN_DIR/generator.out" "$RUN_DIR/generator/log.jsonl"

# the encoder, the committed CPU recipe in two legs (cards/encoder.md): a regression of the renders' W* in W and in
# the parameter features without the generator (ENC_MINUTES x (1 - ENC_IMAGE_SHARE)), then, from its export, the
# image loss on half renders and the latent terms on half samples. The W-space weights are the CPU recipe's (0.05,
# delta 1e-3) x 21.5, the square of the factor by which the export's standardisation shrank W (4.645 -> 1)
ENC_LATENT_ARGS=(--set "batch=$ENC_BATCH" warmup=50 "render_device=$RENDER_DEVICE" render_fraction=1.0 image_weight=0
                 render_latent_weight=1.075 delta_weight=0.0215 feature_weight=10.0)
ENC_IMAGE_ARGS=(--set "batch=$ENC_BATCH" warmup=20 "render_device=$RENDER_DEVICE" 'init_from="weights"' lr=0.0003
                render_fraction=0.5 latent_weight=1.075 render_latent_weight=1.075 delta_weight=0.0215
                feature_weight=10.0 "id_weight=$ENC_ID_WEIGHT")
LATENT_MINUTES=$(python -c "print($ENC_MINUTES * (1 - $ENC_IMAGE_SHARE))")
IMAGE_MINUTES=$(python -c "print($ENC_MINUTES * $ENC_IMAGE_SHARE)")
ENC_STEPS=$(steps_for encoder "$LATENT_MINUTES" "$THREADS" "${ENC_LATENT_ARGS[@]}")
echo "encoder leg 1 (W* regression): $ENC_STEPS steps of batch $ENC_BATCH on $DEVICE"
rm -rf "$RUN_DIR/encoder"
python -m zoo.synthface.train encoder --device "$DEVICE" --threads "$THREADS" --run-dir "$RUN_DIR" \
  --steps "$ENC_STEPS" "${ENC_LATENT_ARGS[@]}" 2>&1 | tee "$RUN_DIR/encoder.out" || true
ENC_STEPS=$(steps_for encoder "$IMAGE_MINUTES" "$THREADS" "${ENC_IMAGE_ARGS[@]}")
echo "encoder leg 2 (image loss, from leg 1): $ENC_STEPS steps of batch $ENC_BATCH on $DEVICE"
rm -rf "$RUN_DIR/encoder"
python -m zoo.synthface.train encoder --device "$DEVICE" --threads "$THREADS" --run-dir "$RUN_DIR" \
  --steps "$ENC_STEPS" "${ENC_IMAGE_ARGS[@]}" 2>&1 | tee -a "$RUN_DIR/encoder.out" || true
finished encoder

tar czf "$OUT/world.tgz" zoo/synthface/weights/generator.* zoo/synthface/weights/encoder.* \
  zoo/synthface/cards/generator.md zoo/synthface/cards/encoder.md \
  "$RUN_DIR/gpu.txt" "$RUN_DIR/render_check.txt" "$RUN_DIR/generator.out" "$RUN_DIR/encoder.out" \
  "$RUN_DIR/generator/log.jsonl" "$RUN_DIR/encoder/log.jsonl"
wait  # the CLIP legs
ls -l "$OUT"
