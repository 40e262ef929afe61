"""Training side of the project: expert datasets, encoder pre-training, the trainer, evaluation.

Modules (each with one job):
    episodes     the on-disk episode format (one ``.npz`` per route run): write atomically, read, verify
    manifest     the dataset manifest (JSON): counts, routes, seeds, config, git revision
    labels       future trajectories / future frame indices / GT boxes from recorded ego poses
    recording    per-tick records of one route run -> an episode
    collection   drive the privileged expert with perturbations and record episodes
    dataset      torch ``Dataset`` of training samples over verified episodes
    config       typed dataclass configs loaded from YAML (unknown keys are errors)
    checkpoint   trainer state (model, optimizer, step, config) in safetensors + JSON, no pickle
    metrics      open-loop L2 at 1/2/3 s and collision with ground-truth boxes
    pretrain     stage (a): encoder pre-training by image reconstruction from patch tokens
    planner_task stage (b): IK model / shortcut baseline through compute_loss, validation metrics
    trainer      the accelerate training loop shared by both stages
    train        ``python -m training.train --config ...``
    grounding    counterfactual probes (blank image, inserted vehicle, perturbed speed)
    probe_report the probe's markdown table, JSON and plots
    synthetic    a small synthetic dataset for tests and smoke runs
    bench2drive  reader of Bench2Drive clips (anno/*.json.gz, camera JPEGs) as episodes of the same samples
    bench2drive_synthetic  a synthetic Bench2Drive clip in the dataset's exact layout
    lora         low-rank adapters for the LLM, merged into the saved model
    standin_weights  random-weight stand-ins of the 0.5B configuration's pretrained folders
    make_weights ``python -m training.make_weights``: collect -> pretrain -> IK -> shortcut -> weights/

Heavy dependencies (torch, accelerate, the simulator) are imported by the modules that need them,
so ``import training`` is cheap.
"""
