"""Token trees: the tree attention mask, greedy and sampled acceptance of a path, and cache compaction —
written once for every tree method (MTAD's beam tree, Medusa, Kangaroo's tree mode)."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import FALSE_ALARM, chi_square_pvalue, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, chisquare
from transformers import DynamicCache

from kangaroo_lite.core.cache import compact_cache
from kangaroo_lite.core.sampling import accept_drafts, make_generator, warp
from kangaroo_lite.core.token_tree import (
    TokenTree,
    accept_greedy_tree,
    accept_sampled_tree,
    tree_attention,
    verify_tree,
)

FAMILIES = ["llama", "qwen2", "mistral"]
V = 5  # vocabulary of the fake target in the distribution tests
RUNS = 4000


pytestmark = pytest.mark.usefixtures("one_thread")


def hand_drawn_tree() -> TokenTree:
    r"""A small tree, drawn as node (token):

             root
            /    \
        0 (10)  1 (11)
        /    \
    2 (12)  3 (13)
      |
    4 (14)
    """
    tree = TokenTree()
    for token, parent in [(10, -1), (11, -1), (12, 0), (13, 0), (14, 2)]:
        tree.add(token, parent)
    return tree


def test_a_tree_knows_each_nodes_ancestors_depth_and_path():
    tree = hand_drawn_tree()
    assert tree.children(-1) == [0, 1] and tree.children(0) == [2, 3] and tree.children(4) == []
    assert tree.ancestors(4) == [0, 2] and tree.ancestors(1) == []
    assert [tree.depth(i) for i in range(-1, 5)] == [0, 1, 1, 2, 2, 3]
    assert tree.path_to(4) == [0, 2, 4] and tree.path_to(-1) == []
    assert tree.path_tokens(3) == [10, 13]
    assert TokenTree.chain([7, 8, 9]).parents == [-1, 0, 1]
    with pytest.raises(ValueError, match="parent must be -1 or an existing node"):
        tree.add(15, parent=5)
    with pytest.raises(ValueError, match="parent must be -1 or an earlier node"):
        tree_attention([-1, 2, 0], 0, 1, torch.float32)


def test_mask_lets_fresh_tokens_attend_causally_and_each_node_its_ancestors_and_itself():
    mask, positions = hand_drawn_tree().attention(cached=2, fresh=2, dtype=torch.float32)
    expected = torch.tensor(
        # cache  fresh   n0 n1 n2 n3 n4
        [
            [1, 1, 1, 0, 0, 0, 0, 0, 0],  # fresh 0
            [1, 1, 1, 1, 0, 0, 0, 0, 0],  # fresh 1
            [1, 1, 1, 1, 1, 0, 0, 0, 0],  # n0
            [1, 1, 1, 1, 0, 1, 0, 0, 0],  # n1
            [1, 1, 1, 1, 1, 0, 1, 0, 0],  # n2
            [1, 1, 1, 1, 1, 0, 0, 1, 0],  # n3
            [1, 1, 1, 1, 1, 0, 1, 0, 1],  # n4
        ],
        dtype=torch.bool,
    )
    assert mask.shape == (1, 1, 7, 9)
    assert torch.equal(mask[0, 0] == 0, expected)
    assert (mask[0, 0][~expected] == torch.finfo(torch.float32).min).all()
    assert positions.tolist() == [[2, 3, 4, 4, 5, 5, 6]]  # a node sits at cached + fresh - 1 + depth


@st.composite
def trees_and_logits(draw):
    """A random tree over a 3-token vocabulary (so that nodes often match) and target logits for it."""
    size = draw(st.integers(0, 12))
    tree = TokenTree()
    for i in range(size):
        tree.add(draw(st.integers(0, 2)), draw(st.integers(-1, i - 1)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return tree, torch.randn(1 + size, 3, generator=generator)


@settings(max_examples=200, deadline=None)
@given(trees_and_logits())
def test_greedy_acceptance_finds_the_longest_path_of_target_argmaxes(case):
    tree, logits = case
    choices = logits.argmax(-1).tolist()

    def all_argmax(node):
        return all(tree.tokens[j] == choices[1 + tree.parents[j]] for j in tree.path_to(node))

    # Brute force over every root-to-node path: the deepest valid one, the earliest node on ties, else the root.
    best = max([-1, *filter(all_argmax, range(len(tree)))], key=lambda node: (tree.depth(node), -node))
    assert accept_greedy_tree(tree, logits) == (tree.path_to(best), choices[1 + best])


def test_verify_tree_is_greedy_at_temperature_zero_and_samples_from_the_warped_target_otherwise():
    tree, logits = hand_drawn_tree(), torch.randn(6, 16)
    assert verify_tree(tree, logits, 0, 1.0, make_generator(0)) == accept_greedy_tree(tree, logits)
    sampled = verify_tree(tree, logits, 0.7, 0.9, make_generator(3))
    assert sampled == accept_sampled_tree(tree, warp(logits, 0.7, 0.9), make_generator(3))


@functools.cache
def fixed_probs(path: tuple[int, ...], seed: int) -> torch.Tensor:
    """A distribution over V tokens that is a fixed function of the path (and of which model: the seed)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + hash(path) % 1_000_003)
    return torch.softmax(1.5 * torch.randn(V, generator=generator), -1)


def target(path: tuple[int, ...]) -> torch.Tensor:
    """The fake target's next-token distribution after `path`."""
    return fixed_probs(path, 0)


def draft(path: tuple[int, ...]) -> torch.Tensor:
    """The fake draft's: half the target's, half unrelated, so that some drafts are accepted and some are not."""
    return 0.5 * target(path) + 0.5 * fixed_probs(path, 1)


def sampled_children(tree: TokenTree, prefix: tuple[int, ...], parent: int, count: int, generator) -> list[int]:
    """`count` children of `parent` drawn i.i.d. from the draft (duplicates kept)."""
    q = draft(prefix + tuple(tree.path_tokens(parent)))
    return [tree.add(int(torch.multinomial(q, 1, generator=generator)), parent, q) for _ in range(count)]


def sampled_tree(prefix, generator) -> TokenTree:
    """Three sampled children at the root, two under each."""
    tree = TokenTree()
    for child in sampled_children(tree, prefix, -1, 3, generator):
        sampled_children(tree, prefix, child, 2, generator)
    return tree


def top_k_tree(prefix, generator) -> TokenTree:
    """The draft's top 2 at the root and under each: deterministic children, point masses."""
    tree = TokenTree()
    for token in draft(prefix).topk(2).indices.tolist():
        child = tree.add(token, -1)
        for grandchild in draft((*prefix, token)).topk(2).indices.tolist():
            tree.add(grandchild, child)
    return tree


def without_replacement_tree(prefix, generator) -> TokenTree:
    """Three distinct children at the root, each drawn from q without the earlier ones; one sampled child under each."""
    tree, q = TokenTree(), draft(prefix)
    for _ in range(3):
        child = tree.add(int(torch.multinomial(q, 1, generator=generator)), -1, q)
        sampled_children(tree, prefix, child, 1, generator)
        q = q.clone()
        q[tree.tokens[child]] = 0
        q = q / q.sum()
    return tree


def copy_and_sampled_tree(prefix, generator) -> TokenTree:
    """A copied two-token branch (point masses, a fixed function of the context) first, then sampled children."""
    tree = TokenTree()
    copied = (sum(prefix) + 1) % V
    tree.add((copied + 2) % V, tree.add(copied, -1))
    for child in sampled_children(tree, prefix, -1, 2, generator):
        sampled_children(tree, prefix, child, 1, generator)
    return tree


def first_two_tokens(build, generator) -> tuple[int, int]:
    """Verify trees against the fake target, round after round, until two tokens are emitted."""
    emitted: tuple[int, ...] = ()
    while len(emitted) < 2:
        tree = build(emitted, generator)
        probs = torch.stack([target(emitted + tuple(tree.path_tokens(node))) for node in range(-1, len(tree))])
        path, token = accept_sampled_tree(tree, probs, generator)
        emitted += (*(tree.tokens[i] for i in path), token)
    return emitted[0], emitted[1]


@pytest.mark.parametrize("build", [sampled_tree, without_replacement_tree, top_k_tree, copy_and_sampled_tree])
def test_sampled_tree_acceptance_keeps_the_target_distribution(build):
    generator = make_generator(0)
    samples = [first_two_tokens(build, generator) for _ in range(RUNS)]
    first = torch.bincount(torch.tensor([a for a, _ in samples]), minlength=V)
    assert chisquare(first.numpy(), (target(()) * RUNS).numpy()).pvalue > FALSE_ALARM
    joint = target(())[:, None] * torch.stack([target((x,)) for x in range(V)])
    assert chi_square_pvalue(samples, joint) > FALSE_ALARM


def test_the_distribution_test_catches_siblings_tried_against_p_instead_of_the_residual():
    """Its power: forgetting the residual update after a rejected sampled child skews the output."""

    def forgetful(tree, probs, generator):
        for child in tree.children(-1):
            token, q = tree.tokens[child], tree.draft_probs[child]
            if float(torch.rand((), generator=generator)) < float(probs[0, token] / q[token]):
                return [child], 0  # tokens after the first do not matter here
        return [], int(torch.multinomial((probs[0] - q).clamp_min(0), 1, generator=generator))

    generator = make_generator(0)
    counts = torch.zeros(V)
    for _ in range(RUNS):
        tree = sampled_tree((), generator)
        probs = torch.stack([target(tuple(tree.path_tokens(node))) for node in range(-1, len(tree))])
        path, token = forgetful(tree, probs, generator)
        counts[tree.tokens[path[0]] if path else token] += 1
    assert chisquare(counts.numpy(), (target(()) * RUNS).numpy()).pvalue < FALSE_ALARM


def test_on_a_chain_the_tree_rule_agrees_in_distribution_with_the_chain_rule():
    """A chain is a tree with one child per node: (drafts accepted, next token) distributed as `accept_drafts`."""
    k, generator = 3, make_generator(0)
    p = torch.stack([fixed_probs((i,), 2) for i in range(k + 1)])
    q = torch.stack([0.5 * p[i] + 0.5 * fixed_probs((i,), 3) for i in range(k)])
    counts = torch.zeros(2, (k + 1) * V)
    for _ in range(RUNS):
        drafted = [int(torch.multinomial(q[i], 1, generator=generator)) for i in range(k)]
        path, token = accept_sampled_tree(TokenTree.chain(drafted, list(q)), p, generator)
        counts[0, len(path) * V + token] += 1
        accepted, token = accept_drafts(p, q, drafted, generator)
        counts[1, accepted * V + token] += 1
    seen = counts.sum(0) > 0
    assert chi2_contingency(counts[:, seen].numpy()).pvalue > FALSE_ALARM


def test_compaction_keeps_the_prefix_and_the_path_in_every_layer_however_long():
    cache = DynamicCache()
    full = [torch.randn(1, 2, 10, 4) for _ in range(4)]
    cache.update(full[0], full[1], 0)
    cache.update(full[2][..., :7, :], full[3][..., :7, :], 1)  # layer 1 behind layer 0, as Kangaroo's deep layers
    compact_cache(cache, 5, [0, 2, 4])
    assert torch.equal(cache.layers[0].keys, full[0][..., [0, 1, 2, 3, 4, 5, 7, 9], :])
    assert torch.equal(cache.layers[0].values, full[1][..., [0, 1, 2, 3, 4, 5, 7, 9], :])
    assert torch.equal(cache.layers[1].keys, full[2][..., :6, :])  # it held only the path's first node
    with pytest.raises(ValueError, match="increasing keep"):
        compact_cache(cache, 5, [2, 1])


def prefilled(model, ids: torch.Tensor) -> DynamicCache:
    """A cache holding `ids`."""
    cache = DynamicCache(config=model.config)
    model(input_ids=ids, cache=cache, use_cache=True)
    return cache


@pytest.mark.parametrize("family", FAMILIES)
def test_one_pass_over_a_tree_then_compaction_gives_the_logits_of_the_plain_path(family):
    model = tiny_model(family)
    context = torch.tensor([[5, 6, 7, 8, 9, 10]])
    tree = TokenTree()
    for token, parent in [(11, -1), (12, -1), (13, 0), (14, 0), (15, 2), (16, 1)]:
        tree.add(token, parent)
    with torch.inference_mode():
        for node in [4, 5, 1, -1]:
            cache = prefilled(model, context[:, :3])  # three positions cached, three fresh
            mask, positions = tree.attention(3, 3, model.dtype)
            ids = torch.cat([context[:, 3:], torch.tensor([tree.tokens])], 1)
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
            ).logits[0]
            path = torch.tensor([tree.path_tokens(node)], dtype=torch.long)
            plain = model(input_ids=torch.cat([context, path, torch.tensor([[20]])], 1)).logits[0]
            torch.testing.assert_close(logits[2 + (node + 1)], plain[5 + path.shape[1]], atol=1e-5, rtol=1e-5)

            compact_cache(cache, 6, tree.path_to(node))
            assert cache.get_seq_length() == 6 + path.shape[1]
            after = model(input_ids=torch.tensor([[20]]), cache=cache, use_cache=True).logits[0, -1]
            torch.testing.assert_close(after, plain[-1], atol=1e-5, rtol=1e-5)


def noisy_tree(model, sequence: list[int], generator: torch.Generator) -> TokenTree:
    """Two children under each node to depth 3: the target's greedy token (left out a quarter of the time) and a
    wrong one, in random order — so that the accepted path ends anywhere in the flat order."""
    tree, frontier = TokenTree(), [-1]
    for _ in range(3):
        expanded = []
        for node in frontier:
            right = int(model(input_ids=torch.tensor([sequence + tree.path_tokens(node)])).logits[0, -1].argmax())
            tokens = [(right + 1) % model.config.vocab_size]
            if float(torch.rand((), generator=generator)) > 0.25:
                tokens.insert(int(torch.randint(2, (), generator=generator)), right)
            expanded += [tree.add(token, node) for token in tokens]
        frontier = expanded
    return tree


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_tree_rounds_with_compaction_reproduce_autoregressive_decoding(family):
    model, generator, new = tiny_model(family, sharpness=3.0), make_generator(0), 16
    prompt = [5, 6, 7, 8]
    with torch.inference_mode():
        expected = list(prompt)
        for _ in range(new):
            expected.append(int(model(input_ids=torch.tensor([expected])).logits[0, -1].argmax()))

        sequence, cache = list(prompt), DynamicCache(config=model.config)
        while len(sequence) < len(expected):
            cached = cache.get_seq_length()
            tree = noisy_tree(model, sequence, generator)
            mask, positions = tree.attention(cached, len(sequence) - cached, model.dtype)
            ids = torch.tensor([sequence[cached:] + tree.tokens])
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
            ).logits[0]
            path, token = accept_greedy_tree(tree, logits[len(sequence) - cached - 1 :])
            compact_cache(cache, len(sequence), path)
            sequence += [tree.tokens[i] for i in path] + [token]
        assert sequence[: len(expected)] == expected
