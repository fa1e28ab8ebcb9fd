"""torch.compile and torch.export of a whole UniConvNet on the CPU paths (the gather core and the PyTorch core).

The custom op's own compile and export tests (the Triton path) are in ops/test_dcn_triton.py.
"""
import pytest
import timm
import torch

import uniconvnet  # noqa: F401  (registers the models)
from uniconvnet.layers import DCNv3, using_dcn_backend
from uniconvnet.ops import BACKENDS


@pytest.fixture(scope='module')
def model_and_input():
    torch.manual_seed(0)
    model = timm.create_model('uniconvnet_a', num_classes=10).eval()
    with torch.no_grad():
        # trained-like, non-zero offsets and masks (both start at zero: sampling is then really deformable)
        for module in model.modules():
            if isinstance(module, DCNv3):
                module.offset.weight.normal_(std=0.2)
                module.mask.weight.normal_(std=0.2)
        # layer scales start at 1e-6, which would hide any error in a branch from the output
        for name, param in model.named_parameters():
            if name.endswith('gamma'):
                param.fill_(1.0)
    x = torch.randn(1, 3, 32, 32)  # tiny: tracing cost grows with the model, not the input
    return model, x


@pytest.mark.slow
def test_export_matches_eager_with_plain_ops(model_and_input):
    model, x = model_and_input
    with using_dcn_backend(model, 'torch'):
        program = torch.export.export(model, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    # on the CPU the graph holds only ATen ops: what ONNX export and other graph consumers need
    assert 'aten.grid_sampler.default' in targets
    assert not any(target.startswith('uniconvnet.') for target in targets)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


# every registered backend that is a custom op and runs natively on CPU tensors
CUSTOM_OP_BACKENDS = [name for name, b in BACKENDS.items() if b.custom_op is not None and b.devices is not None
                      and 'cpu' in b.devices]


@pytest.mark.slow
@pytest.mark.parametrize('backend', CUSTOM_OP_BACKENDS)
def test_export_keeps_the_cpu_core_as_one_op(model_and_input, backend):
    reason = BACKENDS[backend].why_not(torch.zeros(0))
    if reason is not None:
        pytest.skip(reason)
    model, x = model_and_input
    with using_dcn_backend(model, backend):
        program = torch.export.export(model, (x,))
        targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
        assert BACKENDS[backend].custom_op.name.replace('::', '.') + '.default' in targets
        assert 'aten.grid_sampler.default' not in targets
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.slow
def test_compile_matches_eager_in_one_graph(model_and_input):
    model, x = model_and_input
    torch._dynamo.reset()
    # fullgraph: the backend choice inside dcnv3 must not break the graph. aot_eager runs Dynamo and
    # AOTAutograd but not Inductor's C++ build, which takes minutes on 2 cores for this model (see docs/correctness.md).
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
