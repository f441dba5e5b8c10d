"""Torch-free packing (newstagger.packing) gives the model exactly what model.pack_articles gives it."""

import numpy as np

from newstagger.data import load_articles
from newstagger.inputs import Article
from newstagger.packing import ParagraphTokenizer, pool_segments


def test_packing_matches_the_models_own(tiny_model_dir, root):
    import torch
    from transformers import AutoTokenizer

    from newstagger.model import NewsTaggerModel, pack_articles

    articles = load_articles(root / "data" / "validation.jsonl").articles[:8]
    articles.append(Article(id="e", paragraphs=["", "A long one. " * 80, "   ", "Short."], title=""))
    hf = AutoTokenizer.from_pretrained(str(tiny_model_dir), trust_remote_code=False)
    want = pack_articles(hf, articles, None, 32)
    for tokenizer in (ParagraphTokenizer.from_folder(tiny_model_dir), ParagraphTokenizer.from_transformers(hf)):
        got = tokenizer.pack(articles, 32).as_dict()
        for key in want:
            assert np.array_equal(got[key], want[key].numpy()), key
    packed = ParagraphTokenizer.from_folder(tiny_model_dir).pack(articles, 32)
    sums = np.random.default_rng(0).normal(size=(len(packed.input_ids), 4)).astype(np.float32)
    counts = packed.attention_mask.sum(axis=1)
    mine = pool_segments(sums, counts, packed.chunk_segment, packed.segment_mask.shape)
    theirs = NewsTaggerModel.pool_segments(torch.from_numpy(sums), torch.from_numpy(counts),
                                           torch.from_numpy(packed.chunk_segment), packed.segment_mask.shape)
    assert np.allclose(mine, theirs.numpy(), atol=1e-5)
    assert packed.segment_mask[-1].tolist()[:5] == [False, False, True, False, True]  # empty slots stay empty
