"""A real TRL SFT run on the demo model, on CPU, as a training job would run beside `runner watch`:
`python -m tests.checkpoints.trl_train BASE_MODEL_DIR OUTPUT_DIR [--peft] [--steps N] [--save-steps K]`.

Checkpoints land as `OUTPUT_DIR/checkpoint-K/` through TRL's own Trainer; the final
`save_model` + `save_state` go into OUTPUT_DIR itself, then a TRAINING_DONE file. Writing
`trainer_state.json` is slowed down (as on slow shared storage) so a watcher sees each
checkpoint's weights well before its completion marker.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--peft", action="store_true")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--save-steps", type=int, default=2)
    p.add_argument("--marker-delay", type=float, default=3.0)
    p.add_argument("--no-final-checkpoint", action="store_true",
                   help="skip the Trainer's checkpoint at the last step, so the final save in OUTPUT_DIR is the only "
                        "copy of the last step's weights")
    a = p.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainerState
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(1)
    save_to_json = TrainerState.save_to_json

    def slow_save_to_json(self, json_path):
        time.sleep(a.marker_delay)
        return save_to_json(self, json_path)

    TrainerState.save_to_json = slow_save_to_json

    tok = AutoTokenizer.from_pretrained(a.base)
    model = AutoModelForCausalLM.from_pretrained(a.base, torch_dtype=torch.float32)
    data = Dataset.from_dict({"text": [f"Email {i}: the design review moves to Friday." for i in range(16)]})
    peft_config = None
    if a.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=a.out, max_steps=a.steps, save_steps=a.save_steps, per_device_train_batch_size=2,
                     learning_rate=1e-3, logging_steps=1, report_to="none", use_cpu=True, max_length=32,
                     dataloader_num_workers=0, save_only_model=False, bf16=False, fp16=False)
    class SkipFinalCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps and state.global_step % args.save_steps:
                control.should_save = False
            return control

    callbacks = [SkipFinalCheckpoint()] if a.no_final_checkpoint else []
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=peft_config,
                         callbacks=callbacks)
    trainer.train()
    trainer.save_model(a.out)
    trainer.save_state()
    (Path(a.out) / "TRAINING_DONE").write_text("")


if __name__ == "__main__":
    main()
