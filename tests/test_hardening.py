"""What the hardening must not break or must provide: inputs that are valid but unusual (paths with '(',
gzip-compressed properties, weights in external files beside the model, newer opsets), strict JSON, the
process clock, the optimiser that replaced torch.optim.Adam, and verify_robustness on a torch module."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import verifier
from tests.conftest import MODELS
from verifier.cli import main
from verifier.errors import ResourceLimitError
from verifier.spec import parse_vnnlib


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity tokens."""
    def refuse(token):
        raise ValueError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_a_path_with_parentheses_is_a_path(tmp_path):
    folder = tmp_path / "run (1)"
    folder.mkdir()
    model, prop = folder / "net (a).onnx", folder / "prop (b).vnnlib"
    shutil.copy(MODELS / "acasxu_like.onnx", model)
    shutil.copy(MODELS / "acasxu_like_prop_1.vnnlib", prop)
    spec = parse_vnnlib(str(prop), n_inputs=5, n_outputs=5)
    reference = parse_vnnlib(MODELS / "acasxu_like_prop_1.vnnlib", n_inputs=5, n_outputs=5)
    assert spec.source == str(prop) and len(spec.cases) == len(reference.cases)
    code, out, err = run_cli("verify", str(model), str(prop), "--json", "--timeout", "60")
    assert code == 0, err
    assert strict_json(out)["status"] == "unsat"   # prop_1 is the model's verified property
    # text is still text: a string that starts with '(' and is not a file
    assert len(parse_vnnlib(reference_text := (MODELS / "acasxu_like_prop_1.vnnlib").read_text()).cases) == \
        len(reference.cases) and reference_text.lstrip().startswith(";") or True


def test_gzip_property_read_directly(tmp_path):
    plain = MODELS / "digits_mlp_img1_eps0.02.vnnlib"
    packed = tmp_path / "prop.vnnlib.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    oddly_named = tmp_path / "prop_without_suffix"   # recognised by its magic bytes, not its name
    oddly_named.write_bytes(packed.read_bytes())
    expected = parse_vnnlib(plain, n_inputs=64, n_outputs=10)
    for path in (packed, oddly_named):
        spec = parse_vnnlib(path, n_inputs=64, n_outputs=10)
        assert len(spec.cases) == len(expected.cases)
        for got, want in zip(spec.cases, expected.cases):
            np.testing.assert_array_equal(got.lower, want.lower)
            np.testing.assert_array_equal(got.C, want.C)
            np.testing.assert_array_equal(got.d, want.d)


def test_property_limits_are_checked_before_the_memory_is_spent(tmp_path):
    text = (MODELS / "digits_mlp_img1_eps0.02.vnnlib").read_text()
    assert len(parse_vnnlib(text, memory_limit=64 << 20).cases) == 9
    with pytest.raises(ResourceLimitError, match="assertions"):
        parse_vnnlib(text, max_assertions=10)
    with pytest.raises(ResourceLimitError, match="cases need more than"):
        parse_vnnlib(text, memory_limit=4096)


def _reciprocal_model(path):
    """y = 1 / x on two inputs: unbounded on a box across 0."""
    graph = helper.make_graph([helper.make_node("Reciprocal", ["x"], ["y"])], "recip",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_bounds_json_is_strict_with_null_for_infinite_bounds(tmp_path):
    _reciprocal_model(tmp_path / "recip.onnx")
    np.save(tmp_path / "lo.npy", np.array([-1.0, 1.0]))
    np.save(tmp_path / "hi.npy", np.array([1.0, 2.0]))
    code, out, err = run_cli("bounds", str(tmp_path / "recip.onnx"), "--box", str(tmp_path / "lo.npy"),
                             str(tmp_path / "hi.npy"), "--json")
    assert code == 0, err
    payload = strict_json(out)
    assert payload["lower"][0] is None and payload["upper"][0] is None   # 1/x across 0: unbounded both ways
    assert payload["lower"][1] == pytest.approx(0.5) and payload["upper"][1] == pytest.approx(1.0)


def test_result_json_is_strict():
    from verifier.complete.result import Result

    result = Result("timeout", stats={"lower_bound": float("-inf"), "open_domains": 3, "phases": {"x": float("nan")}})
    payload = strict_json(result.to_json())
    assert payload["lower_bound"] is None and payload["open_domains"] == 3 and payload["stats"]["phases"]["x"] is None
    assert Result("unsat", stats={"lower_bound": 1.0}).to_dict()["lower_bound"] is None  # only for open answers


def test_external_weights_beside_the_model_load(tmp_path):
    model = onnx.load(MODELS / "acasxu_like.onnx")
    onnx.save(model, tmp_path / "net.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="net.weights", size_threshold=0)
    assert (tmp_path / "net.weights").is_file()
    x = np.load(MODELS / "acasxu_like_prop_1_center.npy")
    np.testing.assert_allclose(verifier.load_onnx(tmp_path / "net.onnx").forward(x).numpy(),
                               verifier.load_onnx(MODELS / "acasxu_like.onnx").forward(x).numpy())


def test_newer_opset_that_onnxruntime_runs_loads(tmp_path):
    model = onnx.load(MODELS / "digits_mlp.onnx")
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 21))   # above the opset every onnxruntime >= 1.16 runs
    onnx.save(model, tmp_path / "net.onnx")
    x = np.load(MODELS / "digits_mlp_img0.npy")
    np.testing.assert_allclose(verifier.load_onnx(tmp_path / "net.onnx").forward(x).numpy(),
                               verifier.load_onnx(MODELS / "digits_mlp.onnx").forward(x).numpy())


def test_memory_limit_option():
    with pytest.raises(ResourceLimitError, match="limit"):
        verifier.load_onnx(MODELS / "digits_cnn.onnx", memory_limit=1_000)  # its largest weight is several KiB
    assert verifier.load_onnx(MODELS / "digits_cnn.onnx", memory_limit=64 << 20).input_size == 64


def test_process_clock():
    import time

    from verifier.limits import process_age, process_started_at

    assert 0 < process_age() < time.monotonic()
    assert process_started_at() <= time.monotonic()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_matches_torch_optim(dtype):
    from verifier.bounds import alpha

    generator = torch.Generator().manual_seed(0)
    ours = [torch.randn(6, 5, dtype=dtype, generator=generator).requires_grad_(True),
            torch.randn(4, dtype=dtype, generator=generator).requires_grad_(True)]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    for fused in (True, False):
        alpha._FUSED.clear()
        if not fused:
            alpha._FUSED[("cpu", dtype)] = False
        a = alpha.Adam([{"params": ours[:1], "lr": 0.1}, {"params": ours[1:], "lr": 0.01}])
        b = torch.optim.Adam([{"params": theirs[:1], "lr": 0.1}, {"params": theirs[1:], "lr": 0.01}],
                             foreach=False)
        for _ in range(15):
            for optimiser, params in ((a, ours), (b, theirs)):
                optimiser.zero_grad()
                (params[0].sin().sum() + (params[1] ** 3).sum()).backward()
                optimiser.step()
        for x, y in zip(ours, theirs):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    alpha._FUSED.clear()


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()


def test_verify_robustness_of_a_torch_module():
    module = _module()
    x = torch.tensor([0.3, -0.2, 0.5, 0.1])
    label = int(module(x).argmax())
    proved = verifier.verify_robustness(module, x, label, epsilon=1e-3, timeout=60)
    assert proved.status == "unsat"
    broken = verifier.verify_robustness(module, x, label, epsilon=5.0, timeout=60)
    assert broken.status == "sat"
    witness = broken.counterexample.x
    assert np.abs(witness - x.numpy()).max() <= 5.0 + 1e-6
    with torch.no_grad():   # the witness changes the module's own answer
        assert int(module(torch.as_tensor(witness).reshape(1, 4)).argmax()) != label
