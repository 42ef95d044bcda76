"""Small helpers shared by several test files (fixtures live in conftest.py)."""

from contextlib import contextmanager

import torch

import pipeline_meralign


def make_pipeline(model, processors):
    """The pipeline class itself, not pipeline(TASK, ...): loading an exported model with trust_remote_code
    elsewhere in the session re-registers the task to that folder's copy of the module, which tests patch not."""
    feature_extractor, tokenizer = processors
    return pipeline_meralign.ZeroShotMusicEmotionPipeline(model=model, tokenizer=tokenizer, feature_extractor=feature_extractor)


@contextmanager
def torch_threads(n: int):
    """Bitwise-equal results need equal thread counts (matmul reductions are blocked per thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
