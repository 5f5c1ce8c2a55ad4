"""Data: streaming task mixtures and fixed evaluation prompt sets as LightningDataModules."""

from dllm_lab.data.collate import PromptCollator, SFTCollator, sample_mask_prob
from dllm_lab.data.datamodule import PromptSet, TaskDataModule, TaskMixtureStream

__all__ = [
    "PromptCollator", "PromptSet", "SFTCollator", "TaskDataModule", "TaskMixtureStream", "sample_mask_prob",
]
