"""The likelihood watch scores chosen answers exactly: left-padded batches give each row's own log p(answer | prompt),
as one unpadded forward over the full logits does, on every registered architecture."""

from __future__ import annotations

import pytest
import torch

from conftest import ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_probe_scores_equal_one_row_at_a_time(arch, tiny_bases):
    from transformers import AutoModelForCausalLM

    from kotune.stages.displacement import answer_logps

    model = AutoModelForCausalLM.from_pretrained(tiny_bases[arch])
    g = torch.Generator().manual_seed(0)
    lengths = zip(torch.randint(3, 20, (11,), generator=g).tolist(), torch.randint(2, 15, (11,), generator=g).tolist())
    probe = [(torch.randint(3, 200, (n,), generator=g).tolist(), torch.randint(3, 200, (k,), generator=g).tolist())
             for n, k in lengths]
    expected = []
    with torch.no_grad():
        for prompt, answer in probe:
            logits = model(input_ids=torch.tensor([prompt + answer])).logits[0, :-1].float()
            logps = torch.log_softmax(logits, -1)[len(prompt) - 1:]
            expected.append(float(logps.gather(-1, torch.tensor(answer)[:, None]).sum()))
    model.train()
    got = answer_logps(model, probe, batch_size=4)
    assert model.training  # the training mode comes back
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-4, atol=1e-4)


def test_probe_takes_pairs_or_desirable_rows():
    from datasets import Dataset

    from kotune.stages.displacement import chosen_probe

    pairs = Dataset.from_list([{"prompt_ids": [1, 2], "chosen_ids": [5, 9], "rejected_ids": [6, 9]}] * 20)
    assert chosen_probe(pairs) == [([1, 2], [5, 9])] * 16
    unpaired = Dataset.from_list([{"prompt_ids": [1], "completion_ids": [7, 9], "label": False},
                                  {"prompt_ids": [3], "completion_ids": [8, 9], "label": True}])
    assert chosen_probe(unpaired) == [([3], [8, 9])]
    assert chosen_probe(Dataset.from_list([{"prompt": "질문"}])) == []
