"""``python -m dlcv.train`` / ``torchrun --nproc_per_node N -m dlcv.train MODEL ...``: the dlcv-train CLI."""
from .cli import main

if __name__ == "__main__":
    main(prog_name="dlcv-train")
