"""Training: the LightningModules (MDLM SFT, the GRPO family), the one optimizer builder, trainer settings,
training callbacks and the SFT loss."""
