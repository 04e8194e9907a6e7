"""AdamW decays matrices only: not biases, norms, adaLN vectors or embedding tables (nanoGPT's rule)."""

import torch

from discodiff.build import build_run
from discodiff.nets.base import NetSpec
from discodiff.nets.mlp import MLPConfig, TimeMLP
from discodiff.runconfig import TrainConfig, parse_config
from discodiff.train import Trainer
from discodiff.train.optim import param_groups


def _decayed(model: torch.nn.Module, weight_decay: float = 0.1) -> set[str]:
    decay, no_decay = param_groups(model, weight_decay)
    assert decay["weight_decay"] == weight_decay and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)  # each parameter once
    return {names[id(p)] for p in decay["params"]}


def test_mlp_decays_its_matrices_and_not_the_label_table_norms_or_biases():
    """Mutation: decay every parameter of dimension >= 2 (the label table then decays)."""
    net = TimeMLP(NetSpec((2,), 2, num_classes=3), MLPConfig(hidden=8, depth=1))
    assert _decayed(net) == {
        "inp.weight",
        "time.0.weight",
        "time.2.weight",
        "blocks.0.lin1.weight",
        "blocks.0.lin2.weight",
        "out.1.weight",
    }


def test_transformer_and_embedding_tables():
    """Token and position embeddings (nn.Embedding) and CDCD's token encoder do not decay; attention,
    MLP, adaLN modulation and head matrices do. Mutation: drop the embedding exclusion."""
    text = {"data": {"name": "text", "seq_len": 8}}
    net = {"name": "transformer", "width": 8, "depth": 1, "heads": 1, "positions": "learned"}
    _, mdlm = build_run(parse_config({**text, "method": {"name": "mdlm"}, "net": net}))
    block = {
        f"net.blocks.0.{n}.weight" for n in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj", "modulation")
    }
    matrices = {"net.time.0.weight", "net.time.2.weight", "net.modulation_out.weight", "net.head.weight"}
    assert _decayed(mdlm) == block | matrices
    _, cdcd = build_run(parse_config({**text, "method": {"name": "cdcd"}, "net": net}))
    decayed = _decayed(cdcd)
    assert "encoder.weight" not in decayed and "net.embed.weight" in decayed  # cdcd's input is a Linear


def test_trainer_uses_the_groups(tmp_path):
    """Mutation: the trainer's single AdamW group with weight decay on everything."""
    data, method = build_run(
        parse_config({"data": {"name": "toy2d"}, "method": {"name": "gaussian"}, "net": {"name": "mlp"}})
    )
    trainer = Trainer(
        method, data, TrainConfig(weight_decay=0.05), tmp_path, seed=0, device=torch.device("cpu")
    )
    decay, no_decay = trainer.opt.param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])


def test_discrete_flow_base_logits_do_not_decay():
    """The flow's base logits (L, K) are log-probabilities: decay would pull the base toward uniform.
    The layers' networks decay as any network. Mutation: drop DiscreteFlow.no_weight_decay."""
    text = {"data": {"name": "text", "seq_len": 8}}
    net = {"name": "transformer", "width": 8, "depth": 1, "heads": 1}
    _, flow = build_run(parse_config({**text, "method": {"name": "discrete_flow"}, "net": net}))
    decayed = _decayed(flow)
    assert "base_logits" not in decayed and "layers.0.net.head.weight" in decayed
