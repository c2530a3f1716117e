# Sourced by the scripts: settings every CPU run of DeepSpeed needs here.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/llmspec/torch_extensions/torch2.13.0-ds0.19.8}
mkdir -p "$TORCH_EXTENSIONS_DIR"
