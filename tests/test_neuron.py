"""neuron.py: the CLIF module's snnTorch API, state handling, and bad input."""

import copy
import io
import pickle

import pytest
import snntorch as snn
import snntorch.surrogate as sns
import snntorch.utils
import torch
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF
from snntorch_clif.reference import clif_step_reference
from snntorch_clif.surrogate import ATan, Rectangle


def drive(clif: CLIF, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([clif(xt)[0] for xt in x])


# --- construction ------------------------------------------------------------------------
def test_defaults_are_the_papers() -> None:
    clif = CLIF()
    assert clif.beta.item() == 0.5 and clif.threshold.item() == 1.0
    assert clif.spike_grad == Rectangle(1.0)
    assert clif.reset_mechanism == "subtract"
    assert clif.reset_delay is False  # the paper's same-step reset (snn.Leaky defaults to True)


def test_learnable_values_are_parameters_fixed_ones_buffers() -> None:
    clif = CLIF(learn_beta=True, learn_graded_spikes_factor=True)
    params = dict(clif.named_parameters())
    buffers = dict(clif.named_buffers())
    assert set(params) == {"beta", "graded_spikes_factor"}
    assert {"threshold", "reset_mechanism_val"} <= set(buffers)
    assert "mem" not in clif.state_dict() and "comp" not in clif.state_dict()


def test_per_neuron_parameters_broadcast() -> None:
    beta = torch.tensor([0.2, 0.9, 0.5])
    thr = torch.tensor([0.5, 1.0, 2.0])
    clif = CLIF(beta=beta, threshold=thr)
    x = torch.rand(4, 3) * 2
    spk, comp, mem = clif(x)
    ref = clif_step_reference(x, torch.zeros(4, 3), torch.zeros(4, 3), beta, thr, Rectangle())
    for a, b in zip((spk, comp, mem), ref):
        assert torch.equal(a, b)


def test_snntorch_surrogates_are_stored_picklable() -> None:
    clif = CLIF(spike_grad=sns.atan(alpha=3.0))
    assert clif.spike_grad == ATan(3.0)
    pickle.dumps(clif)


# --- call modes --------------------------------------------------------------------------
def test_explicit_implicit_and_init_hidden_agree() -> None:
    x = 2 * torch.rand(6, 3, 5)
    explicit = CLIF()
    comp, mem = explicit.reset_mem()
    assert comp.numel() == 0 and mem.numel() == 0  # empty before the first forward: means zeros
    outs = []
    for xt in x:
        spk, comp, mem = explicit(xt, comp, mem)
        outs.append(spk)
    implicit = CLIF()
    hidden = CLIF(init_hidden=True)
    hidden_out = CLIF(init_hidden=True, output=True)
    for t, xt in enumerate(x):
        spk_i, comp_i, mem_i = implicit(xt)
        spk_h = hidden(xt)
        spk_o, comp_o, mem_o = hidden_out(xt)
        assert isinstance(spk_h, torch.Tensor)
        assert torch.equal(spk_i, outs[t]) and torch.equal(spk_h, outs[t]) and torch.equal(spk_o, outs[t])
    assert torch.equal(comp_i, comp) and torch.equal(mem_o, mem) and torch.equal(comp_o, comp)
    assert torch.equal(hidden.mem, mem) and torch.equal(hidden.comp, comp)


def test_states_passed_with_init_hidden_raise_type_error() -> None:
    clif = CLIF(init_hidden=True)
    with pytest.raises(TypeError, match="init_hidden"):
        clif(torch.rand(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))


def test_sequential_with_init_hidden_and_multi_step() -> None:
    net = nn.Sequential(nn.Linear(4, 8), CLIF(init_hidden=True, step_mode="multi"), nn.Linear(8, 2),
                        CLIF(init_hidden=True, step_mode="multi"))
    out = net(torch.rand(5, 3, 4))
    assert out.shape == (5, 3, 2)


def test_single_step_loop_equals_multi_step_call_exactly() -> None:
    x = 2 * torch.rand(9, 4, 6)
    for reset in ("subtract", "zero", "none"):
        single = CLIF(reset_mechanism=reset)
        multi = CLIF(reset_mechanism=reset, step_mode="multi", state_sequences=True)
        spk_seq, comp_seq, mem_seq = multi(x)
        for t, xt in enumerate(x):
            spk, comp, mem = single(xt)
            assert torch.equal(spk, spk_seq[t]) and torch.equal(comp, comp_seq[t]) and torch.equal(mem, mem_seq[t])
        assert torch.equal(multi.mem, mem_seq[-1])


def test_chunked_multi_step_equals_one_call_and_truncated_bptt() -> None:
    x = (2 * torch.rand(12, 3, 5)).requires_grad_()
    whole = CLIF(step_mode="multi", init_hidden=True)
    spk_whole = whole(x)
    chunked = CLIF(step_mode="multi", init_hidden=True)
    chunks = []
    for part in x.split(4):
        chunks.append(chunked(part))
        chunked.detach_hidden()
    assert torch.equal(torch.cat(chunks), spk_whole)
    chunks[-1].sum().backward()  # truncated: no gradient reaches the first chunk
    assert x.grad[:8].abs().sum() == 0 and x.grad[8:].abs().sum() > 0


def test_state_sequences_option() -> None:
    clif = CLIF(step_mode="multi", state_sequences=True)
    spk, comp, mem = clif(torch.rand(7, 2, 3))
    assert comp.shape == mem.shape == (7, 2, 3)
    final = CLIF(step_mode="multi")
    _, comp_T, mem_T = final(torch.rand(7, 2, 3))
    assert comp_T.shape == (2, 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_outputs_keep_the_input_dtype(dtype: torch.dtype) -> None:
    x = (2 * torch.rand(3, 4)).to(dtype)
    spk, comp, mem = CLIF(learn_beta=True)(x)
    assert spk.dtype == comp.dtype == mem.dtype == dtype
    spk, comp, mem = CLIF(step_mode="multi")(x.unsqueeze(0))
    assert spk.dtype == comp.dtype == mem.dtype == dtype


def test_graded_spikes_factor_scales_output_only() -> None:
    x = 2 * torch.rand(4, 3)
    spk1, comp1, mem1 = CLIF()(x)
    spk2, comp2, mem2 = CLIF(graded_spikes_factor=2.5)(x)
    assert torch.equal(spk2, 2.5 * spk1) and torch.equal(comp1, comp2) and torch.equal(mem1, mem2)


def test_learnable_beta_is_clamped_like_snntorch() -> None:
    clif = CLIF(beta=1.5, learn_beta=True)
    x = torch.full((1, 1), 0.5)
    clif(x)
    _, _, mem = clif(x)
    _, _, mem_ref = CLIF(beta=1.0)(x)
    _, _, mem_ref = CLIF(beta=1.0)(x, torch.zeros(1, 1), mem_ref)
    assert torch.allclose(mem, mem_ref)


def test_inhibition_and_state_quant_run_on_reference() -> None:
    x = torch.tensor([[1.5, 2.0, 0.1]])
    spk, _, _ = CLIF(inhibition=True)(x)
    assert spk.tolist() == [[0.0, 1.0, 0.0]]
    spk, comp, mem = CLIF(state_quant=torch.round)(torch.tensor([[0.6, 0.4]]))
    assert spk.tolist() == [[1.0, 0.0]] and mem.tolist() == [[-1.0, 0.0]]  # h = round(0.6) = 1 fires; round(1 - (1 + sig(1))) = -1


# --- state handling ----------------------------------------------------------------------
def test_smaller_last_batch_starts_over_from_zeros() -> None:
    clif = CLIF()
    clif(2 * torch.rand(8, 3))
    x_small = 2 * torch.rand(5, 3)
    spk, comp, mem = clif(x_small)
    ref = CLIF()(x_small)
    assert all(torch.equal(a, b) for a, b in zip((spk, comp, mem), ref))


def test_reset_mem_empties_and_detaches_both_states() -> None:
    clif = CLIF()
    x = 2 * torch.rand(2, 3)
    clif(x.requires_grad_())
    comp, mem = clif.reset_mem()
    assert comp.numel() == 0 and mem.numel() == 0  # empty: zeros at the next step
    assert not comp.requires_grad and not mem.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(clif(x), CLIF()(x)))  # starts over from zeros


def test_assigning_mem_resets_comp() -> None:
    clif = CLIF()
    clif(2 * torch.rand(2, 3))
    clif.mem = torch.full((2, 3), 0.3)
    assert torch.equal(clif.comp, torch.zeros(2, 3))
    assert torch.equal(clif.mem, torch.full((2, 3), 0.3))


def test_class_level_reset_and_detach_reach_every_clif() -> None:
    a, b = CLIF(init_hidden=True), CLIF(init_hidden=True)
    a((2 * torch.rand(2, 3)).requires_grad_())
    b((2 * torch.rand(2, 3)).requires_grad_())
    CLIF.detach_hidden()
    assert not a.mem.requires_grad and not b.comp.requires_grad
    CLIF.reset_hidden()
    assert a.comp.abs().sum() == 0 and b.mem.abs().sum() == 0


def _net() -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.lif = CLIF(init_hidden=True)
            self.block = nn.Sequential(nn.Linear(4, 4), CLIF(init_hidden=True))  # nested

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(self.lif(self.fc(x)))

    return Net()


def _states(net: nn.Module) -> list[torch.Tensor]:
    return [s for m in net.modules() if isinstance(m, CLIF) for s in (m.comp, m.mem)]


def _two_driven_nets() -> tuple[nn.Module, nn.Module]:
    """Two networks whose CLIF states hold a graph after one step on the same input."""
    net, other = _net(), _net()
    x = 3 * torch.rand(2, 4, requires_grad=True)
    net(x)
    other(x)
    return net, other


def test_our_reset_touches_exactly_this_networks_clifs() -> None:
    net, other = _two_driven_nets()
    snntorch_clif.reset(net)
    assert all(s.abs().sum() == 0 and not s.requires_grad for s in _states(net))
    assert any(s.abs().sum() > 0 for s in _states(other))  # another network keeps its states


def test_our_detach_touches_exactly_this_network() -> None:
    net, other = _two_driven_nets()
    snntorch_clif.detach(net)
    assert not any(s.requires_grad for s in _states(net))
    assert all(s.requires_grad for s in _states(other))


def test_snntorch_utils_reset_clears_both_states() -> None:
    """snnTorch 1.0: finds top-level Leaky (CLIF is one) and zeroes `mem` of every live Leaky."""
    net = nn.Sequential(nn.Linear(4, 4), CLIF(init_hidden=True), nn.Linear(4, 4), CLIF(init_hidden=True))
    net(3 * torch.rand(2, 4, requires_grad=True))
    snntorch.utils.reset(net)
    states = _states(net)
    assert all(s.abs().sum() == 0 and not s.requires_grad for s in states)


def test_newer_snntorch_reset_protocol_clears_both_states() -> None:
    """Newer snnTorch resets by calling each neuron's reset_mem(): emulate that protocol."""
    net = _net()
    net(3 * torch.rand(2, 4, requires_grad=True))
    for module in net.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    assert all(s.abs().sum() == 0 and not s.requires_grad for s in _states(net))


def test_collected_clifs_leave_snntorchs_instance_list() -> None:
    before = len(snn.SpikingNeuron.instances)
    clif = CLIF()
    assert len(snn.SpikingNeuron.instances) == before + 1
    del clif
    assert len(snn.SpikingNeuron.instances) == before


# --- copying and checkpoints -------------------------------------------------------------
def test_deepcopy_mid_training() -> None:
    net = nn.Sequential(nn.Linear(3, 3), CLIF(init_hidden=True))
    net(torch.rand(2, 3))  # states now carry a graph
    twin = copy.deepcopy(net)
    x = torch.rand(2, 3)
    assert torch.equal(twin(x), net(x))


def test_copies_and_data_parallel_replicas_keep_states_of_their_own() -> None:
    """The kept states live in one plain object per neuron: a deep copy, a pickle and an
    nn.DataParallel replica (which copies __dict__ shallowly) must each get their own."""
    clif = CLIF(init_hidden=True)
    clif(torch.full((2, 3), 0.7))
    mem_before = clif.mem.clone()
    for twin in (copy.deepcopy(clif), pickle.loads(pickle.dumps(clif)), clif._replicate_for_data_parallel()):
        twin(torch.full((2, 3), 5.0))
        assert not torch.equal(twin.mem, mem_before)
        assert torch.equal(clif.mem, mem_before), type(twin)


def test_learnable_values_held_as_plain_attributes_are_the_ones_used() -> None:
    """nn.DataParallel's replicate() gives each replica its learnable values as plain
    tensors (no longer Parameters, so kept in __dict__): the replica must step with those."""
    clif = CLIF(beta=0.5, threshold=1.0, learn_beta=True, learn_threshold=True)
    replica = clif._replicate_for_data_parallel()
    assert not replica._parameters
    replica.beta = clif.beta * 0.5  # what replicate() does with the broadcast copies
    replica.threshold = clif.threshold * 2.0
    x = torch.tensor([[1.5, 2.5, 0.5], [3.0, 1.0, 2.2]])
    expected = CLIF(beta=0.25, threshold=2.0)
    for step in range(2):
        assert torch.equal(replica(x)[0], expected(x)[0]), step


def test_whole_module_pickled_with_the_old_state_attributes_loads() -> None:
    clif = CLIF(init_hidden=True)
    state = clif.__getstate__()
    kept = state.pop("_kept")
    state.update(_comp=torch.full((3,), 0.5), _mem=torch.full((3,), 0.25), _mem_had_graph=False)
    old = CLIF.__new__(CLIF)
    old.__setstate__(state)
    assert torch.equal(old.mem, torch.full((3,), 0.25)) and torch.equal(old.comp, torch.full((3,), 0.5))
    assert kept.mem.numel() == 0


def test_whole_model_save_load_with_default_surrogate() -> None:
    net = nn.Sequential(nn.Linear(3, 3), CLIF(init_hidden=True, learn_threshold=True))
    x = 2 * torch.rand(4, 2, 3)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(drive_seq(loaded, x), drive_seq(net, x))


def drive_seq(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    snntorch_clif.reset(net)
    return torch.stack([net(xt) for xt in x])


def test_loading_a_checkpoint_changes_the_reset_used() -> None:
    source = CLIF(reset_mechanism="zero")
    target = CLIF(reset_mechanism="subtract")
    buf = io.BytesIO()
    torch.save(source.state_dict(), buf)
    buf.seek(0)
    target.load_state_dict(torch.load(buf, weights_only=True))
    assert target.reset_mechanism == "zero"
    x = torch.tensor([1.5])
    assert torch.equal(target(x)[2], CLIF(reset_mechanism="zero")(x)[2])


# --- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"reset_mechanism": "hard"}, ValueError, "reset_mechanism"),
        ({"beta": 1.5}, ValueError, "beta"),
        ({"beta": torch.tensor([0.5, -0.1])}, ValueError, "beta"),
        ({"spike_grad": "atan"}, TypeError, "spike_grad"),
        ({"step_mode": "m"}, ValueError, "step_mode"),
        ({"beta": "0.5"}, TypeError, "beta"),
        ({"state_quant": 3}, TypeError, "state_quant"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        CLIF(**kwargs)


def test_bad_reset_mechanism_assignment() -> None:
    with pytest.raises(ValueError, match="reset_mechanism"):
        CLIF().reset_mechanism = "soft"


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda c: c([1.0, 2.0]), TypeError, "input_ must be a torch.Tensor"),
        (lambda c: c(torch.ones(2, 3, dtype=torch.int64)), TypeError, "input_ must be float"),
        (lambda c: c(torch.rand(2, 3), torch.zeros(4), torch.zeros(2, 3)), ValueError,
         r"comp must have shape \(2, 3\) to match the input \(or broadcast to it\), got \(4,\)"),
        (lambda c: c(torch.rand(2, 3), torch.zeros(2, 3), torch.zeros(3, 3)), ValueError, r"mem must have shape"),
        (lambda c: c(torch.rand(3), torch.zeros(2, 3), torch.zeros(2, 3)), ValueError, r"comp must have shape \(3,\)"),
        (lambda c: c(torch.rand(2, 3), torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64)), TypeError,
         "mem must have the input's dtype"),
        (lambda c: c(torch.rand(2, 3), torch.zeros(2, 3, device="meta"), torch.zeros(2, 3)), ValueError,
         "comp must be on the input's device"),
        (lambda c: c(torch.rand(2, 3), 0.0, torch.zeros(2, 3)), TypeError, "comp must be a torch.Tensor"),
    ],
)
def test_bad_forward_input_gets_a_clear_error(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call(CLIF())


def test_multi_step_needs_a_time_dimension() -> None:
    with pytest.raises(ValueError, match=r"\[T, \.\.\.\]"):
        CLIF(step_mode="multi")(torch.tensor(1.0))


def test_per_neuron_parameter_that_does_not_broadcast() -> None:
    clif = CLIF(threshold=torch.ones(4))
    with pytest.raises(ValueError, match="threshold of shape"):
        clif(torch.rand(2, 3))


# --- snn.Leaky idioms: errors that name the CLIF idiom, states that broadcast -------------
LEAKY_IDIOMS = {
    "init_leaky_result_as_one_state": lambda clif, x: clif(x, clif.init_leaky()),
    "reset_mem_result_as_one_state": lambda clif, x: clif(x, clif.reset_mem()),
    "one_state_positional": lambda clif, x: clif(x, torch.zeros_like(x)),
    "one_state_by_keyword": lambda clif, x: clif(x, mem=torch.zeros_like(x)),
    "comp_by_keyword_only": lambda clif, x: clif(x, comp=torch.zeros_like(x)),
    "tuple_as_mem": lambda clif, x: clif(x, torch.zeros_like(x), clif.reset_mem()),
}


@pytest.mark.parametrize("idiom", list(LEAKY_IDIOMS))
def test_leaky_idioms_raise_an_error_naming_the_clif_idiom(idiom: str) -> None:
    with pytest.raises(TypeError) as info:
        LEAKY_IDIOMS[idiom](CLIF(), torch.rand(2, 3))
    message = str(info.value)
    assert "comp, mem = clif.reset_mem()" in message
    assert "spk, comp, mem = clif(x, comp, mem)" in message


def test_tutorial_3_one_element_state_with_a_0d_input() -> None:
    """snnTorch tutorial 3: `mem = torch.zeros(1)` and a 0-d input current per step."""
    current = torch.cat([torch.zeros(3), torch.full((12,), 0.7)])
    clif, twin = CLIF(beta=0.8), CLIF(beta=0.8)
    comp, mem = torch.zeros(1), torch.zeros(1)
    comp_t, mem_t = twin.reset_mem()
    for x in current:
        spk, comp, mem = clif(x, comp, mem)
        spk_t, comp_t, mem_t = twin(x, comp_t, mem_t)
        assert spk.shape == mem.shape == torch.Size([]) and torch.equal(mem, mem_t) and torch.equal(spk, spk_t)
    assert float(clif(torch.tensor(0.5), torch.zeros(1), torch.full((1,), 0.6))[2]) == pytest.approx(0.8 * 0.6 + 0.5)


def test_broadcastable_state_is_repeated_over_the_batch() -> None:
    clif = CLIF()
    per_neuron = torch.tensor([0.2, 0.9, 0.5])
    x = torch.rand(4, 3)
    spk, comp, mem = clif(x, torch.zeros(3), per_neuron)
    ref = clif(x, torch.zeros(4, 3), per_neuron.expand(4, 3).clone())
    assert mem.shape == (4, 3) and all(torch.equal(a, b) for a, b in zip((spk, comp, mem), ref))
