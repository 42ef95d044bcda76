"""Hand-written word lists for benchmarks/label_space.py, and the check that keeps them apart from evaluation words.

Nothing here was chosen from model scores: every list was written from the words' ordinary English meaning before
any embedding was computed. check_word_lists() raises if a pole word or a dev word (the dev words also give the
common direction) equals or obviously inflects an evaluation word, so the held-out measures stay held out.
"""

from __future__ import annotations

import os

VOCABS = ("mtg-jamendo-moodtheme", "cal500-emotion", "emotify-gems9")

# Candidate templates for the CLIP-style ensemble. The ensemble is chosen from this pool on dev data only.
TEMPLATE_POOL = [
    "{}",
    "This music sounds {}.",
    "{} music",
    "music that sounds {}",
    "a {} song",
    "This song makes me feel {}.",
    "The mood of this music is {}.",
    "A piece of music that feels {}.",
    "I feel {}.",
    "This is {} music.",
    "The song sounds {}.",
    "Listening to this music, I feel {}.",
]

# Candidate pole-word sets (two a-priori styles per axis); one per axis is chosen on dev data.
# "evaluative": generic good/bad words; "feeling": words for felt states. Arousal "motion": lively/frantic vs
# drowsy/inert; "activation": physiological alertness vs idleness. High-arousal poles mix pleasant and
# unpleasant words (and low ones too) so the arousal axis is not a second valence axis.
VALENCE_POLES = {
    "evaluative": (
        ["good", "nice", "great", "excellent", "fine", "superb"],
        ["bad", "awful", "terrible", "horrible", "nasty", "dreadful"],
    ),
    "feeling": (
        ["elated", "blissful", "jubilant", "ecstatic", "euphoric", "exultant"],
        ["sorrowful", "wretched", "despairing", "tormented", "mournful", "bereaved"],
    ),
}
AROUSAL_POLES = {
    "motion": (
        ["lively", "vigorous", "frantic", "hectic", "wild", "frenzied"],
        ["drowsy", "sluggish", "lethargic", "sedate", "motionless", "inert"],
    ),
    "activation": (
        ["alert", "stimulated", "hyper", "wired", "animated", "jittery"],
        ["idle", "inactive", "languid", "dormant", "sedentary", "lazy"],
    ),
}

# Dev lexicon: emotion and mood adjectives, grouped by meaning (for the dev nearest-synonym task). Words are
# scored against the Warriner et al. (2013) valence/arousal norms where those rate them. Disjoint from every
# evaluation word, from all pole words and from NEW_USER_WORDS (checked in code).
DEV_GROUPS = {
    "joy": [
        "jovial",
        "exuberant",
        "bubbly",
        "giddy",
        "overjoyed",
        "ebullient",
        "chipper",
        "buoyant",
        "amused",
        "enthusiastic",
        "sunny",
        "bouncy",
        "radiant",
        "blithe",
        "sprightly",
        "peppy",
        "perky",
        "frisky",
        "hilarious",
        "jocular",
    ],
    "anger": [
        "livid",
        "irritated",
        "irritable",
        "resentful",
        "indignant",
        "outraged",
        "grumpy",
        "cranky",
        "exasperated",
        "hostile",
        "bitter",
        "cross",
        "wrathful",
        "vengeful",
        "spiteful",
        "surly",
        "sulky",
        "belligerent",
        "violent",
        "savage",
        "rage",
    ],
    "fear": [
        "fearful",
        "scared",
        "frightened",
        "terrified",
        "panicky",
        "edgy",
        "apprehensive",
        "jumpy",
        "horrified",
        "panicked",
        "uptight",
        "timid",
        "insecure",
        "paranoid",
        "threatened",
        "petrified",
        "shaky",
        "scary",
        "spooky",
        "creepy",
        "eerie",
        "ominous",
        "sinister",
    ],
    "sadness": [
        "dejected",
        "despondent",
        "downcast",
        "forlorn",
        "woeful",
        "doleful",
        "lonely",
        "lonesome",
        "desolate",
        "dismal",
        "morose",
        "bleak",
        "tragic",
        "grieving",
        "weeping",
        "crying",
        "bereft",
        "pitiful",
        "hurt",
        "grief",
    ],
    "calm": [
        "cozy",
        "composed",
        "untroubled",
        "unhurried",
        "leisurely",
        "undisturbed",
        "quiet",
        "still",
        "mild",
        "smooth",
        "hushed",
        "silent",
    ],
    "affection": [
        "warm",
        "sweet",
        "fond",
        "adoring",
        "devoted",
        "intimate",
        "sensual",
        "kind",
        "cuddly",
        "friendly",
        "adorable",
        "cute",
        "charming",
        "dear",
        "amorous",
        "nurturing",
        "motherly",
    ],
    "solemnity": [
        "reverent",
        "dignified",
        "earnest",
        "sober",
        "austere",
        "grim",
        "stately",
        "ceremonial",
        "formal",
        "sacred",
        "religious",
        "spiritual",
        "pious",
        "devout",
    ],
    "power": [
        "heroic",
        "bold",
        "fierce",
        "robust",
        "dynamic",
        "brave",
        "courageous",
        "determined",
        "majestic",
        "grand",
        "noble",
        "potent",
        "muscular",
        "tough",
        "invincible",
        "victorious",
        "glorious",
        "unstoppable",
    ],
    "wonder": [
        "astounded",
        "awestruck",
        "surprised",
        "stunned",
        "dazzled",
        "enchanted",
        "fascinated",
        "spellbound",
        "mystified",
        "magical",
        "mysterious",
        "miraculous",
        "awesome",
        "intrigued",
        "curious",
        "marvellous",
    ],
    "longing": ["wistful", "yearning", "longing", "sentimental", "homesick", "regretful", "pensive", "reflective"],
    "fatigue": ["weary", "listless", "exhausted", "fatigued", "apathetic", "dull", "drained"],
    "shame": ["ashamed", "guilty", "embarrassed", "humiliated", "remorseful", "disgraced", "sheepish", "bashful"],
    "disgust": ["disgusted", "revolted", "nauseous", "gross", "repulsive", "sickened"],
    "pride": ["proud", "confident", "smug", "arrogant", "boastful"],
}

# Ordinary words a new user might type for the 8 latent emotions, reserved as a future held-out set: they are
# treated as evaluation words (no pole, dev or direction word may touch them) and no model score was computed
# for them here. Chosen as everyday thesaurus synonyms, three per emotion.
LATENT_EMOTIONS = ["joyful", "sad", "tender", "angry", "calm", "tense", "solemn", "powerful"]
NEW_USER_WORDS = [
    ["jolly", "glum", "affectionate", "furious", "tranquil", "anxious", "serious", "mighty"],
    ["merry", "tearful", "gentle", "irate", "restful", "nervous", "grave", "triumphant"],
    ["gleeful", "heartbroken", "caring", "enraged", "placid", "worried", "somber", "forceful"],
]

# Meaning map for the cross-vocabulary nearest-label check, written from the words themselves (never from model
# scores). One line of reasoning per group. Labels left out are not emotions (themes, uses, genres, tempo) or are
# ambiguous between groups (dark, deep, dramatic, heavy, cool, groovy): they stay unmapped and out of the score,
# but they remain candidates when they are the nearest label.
MEANING_GROUPS = {
    "joy": "happiness, cheerfulness, fun and playfulness: pleasant and lively",
    "hope": "optimism, uplift, inspiration, motivation: pleasant and forward-looking",
    "sadness": "sadness and melancholy: unpleasant, low energy",
    "tenderness": "love, affection, romance, softness, sensuality (GEMS tenderness lists in love, sensual, tender)",
    "calm": "peace, relaxation, soothing comfort, meditation (GEMS peacefulness lists calm, soothed, meditative)",
    "tension": "tension, agitation, anger, aggression: unpleasant and aroused (GEMS tension lists irritated)",
    "power": "strength, energy, excitement, grandeur (GEMS power lists strong, energetic, triumphant, fiery)",
    "solemnity": "solemnity, gravity, reverence",
    "wonder": "amazement, awe, wonder",
    "nostalgia": "nostalgia, dreaminess, evoking the past (GEMS nostalgia lists nostalgic, dreamy, sentimental)",
    "passion": "being moved, emotional intensity, passion",
    "strangeness": "bizarre, weird, odd",
}
MEANING_MAP = {
    "mtg-jamendo-moodtheme": {
        "happy": "joy",
        "fun": "joy",
        "funny": "joy",
        "upbeat": "joy",
        "party": "joy",
        "hopeful": "hope",
        "positive": "hope",
        "uplifting": "hope",
        "inspiring": "hope",
        "motivational": "hope",
        "sad": "sadness",
        "melancholic": "sadness",
        "love": "tenderness",
        "romantic": "tenderness",
        "soft": "tenderness",
        "sexy": "tenderness",
        "calm": "calm",
        "relaxing": "calm",
        "meditative": "calm",
        "energetic": "power",
        "powerful": "power",
        "epic": "power",
        "dream": "nostalgia",
        "retro": "nostalgia",
        "emotional": "passion",
    },
    "cal500-emotion": {
        "happy": "joy",
        "cheerful, festive": "joy",
        "carefree, lighthearted": "joy",
        "light, playful": "joy",
        "positive, optimistic": "hope",
        "sad": "sadness",
        "loving, romantic": "tenderness",
        "tender, soft": "tenderness",
        "touching, loving": "tenderness",
        "calming, soothing": "calm",
        "laid-back, mellow": "calm",
        "pleasant, comfortable": "calm",
        "angry, aggressive": "tension",
        "powerful, strong": "power",
        "arousing, awakening": "power",
        "exciting, thrilling": "power",
        "emotional, passionate": "passion",
        "bizarre, weird": "strangeness",
    },
    "emotify-gems9": {
        "joyful_activation": "joy",
        "sadness": "sadness",
        "tenderness": "tenderness",
        "calmness": "calm",
        "tension": "tension",
        "power": "power",
        "solemnity": "solemnity",
        "amazement": "wonder",
        "nostalgia": "nostalgia",
    },
}

# Optional descriptions (extra texts averaged into a built-in label's vector): short dictionary-style glosses of
# the emotion-bearing built-in labels, written by hand. A word a user types has none. Not used by the recommended
# representation (they cannot be validated on dev data, which has no built-in labels); measured separately.
DESCRIPTIONS = {
    "happy": "feeling or showing pleasure and contentment",
    "fun": "amusing, entertaining and enjoyable",
    "funny": "causing laughter or amusement",
    "upbeat": "cheerful and lively, with a bright beat",
    "party": "festive music for celebrating and dancing",
    "hopeful": "feeling hope about the future",
    "positive": "confident and full of good feeling",
    "uplifting": "raising the spirits",
    "inspiring": "filling the listener with the urge to do something",
    "motivational": "giving drive and resolve",
    "sad": "feeling or causing sorrow",
    "melancholic": "a pensive, lingering sadness",
    "love": "deep affection and attachment",
    "romantic": "expressing love and intimacy",
    "soft": "quiet, delicate and gentle",
    "sexy": "sensual and seductive",
    "calm": "quiet, still and free from agitation",
    "relaxing": "easing tension, restful",
    "meditative": "contemplative and absorbed in thought",
    "energetic": "full of energy and drive",
    "powerful": "having great strength and force",
    "epic": "grand, heroic and on a large scale",
    "dream": "dreamy, drifting and unreal",
    "retro": "evoking the styles of the past",
    "emotional": "stirring strong feelings",
    "dark": "gloomy, ominous and sinister",
    "deep": "profound and intense",
    "dramatic": "striking, tense and full of contrast",
    "heavy": "loud, dense and forceful",
    "cool": "relaxed and stylish",
    "groovy": "rhythmic and fun to dance to",
    "cheerful, festive": "in good spirits, celebrating",
    "carefree, lighthearted": "free from worry, light in mood",
    "light, playful": "light and full of fun",
    "positive, optimistic": "hopeful and confident about the future",
    "loving, romantic": "full of love and affection",
    "tender, soft": "gentle, caring and delicate",
    "touching, loving": "moving the heart with affection",
    "calming, soothing": "bringing peace and relief",
    "laid-back, mellow": "easygoing, relaxed and smooth",
    "pleasant, comfortable": "agreeable and at ease",
    "angry, aggressive": "full of rage and hostility",
    "powerful, strong": "full of strength and force",
    "arousing, awakening": "stimulating, waking the listener up",
    "exciting, thrilling": "causing excitement",
    "emotional, passionate": "full of intense feeling",
    "bizarre, weird": "very strange and unusual",
    "joyful_activation": "joyful, animated, wanting to dance",
    "sadness": "sorrow and unhappiness",
    "tenderness": "affection, warmth and gentleness",
    "calmness": "peace, quiet and relaxation",
    "tension": "nervous, agitated and irritated",
    "power": "strength, energy and triumph",
    "solemnity": "seriousness, dignity and reverence",
    "amazement": "wonder, awe and astonishment",
    "nostalgia": "longing for the past, sentimental",
}


# ------------------------------------------------------------------------------------- disjointness of word lists
_SUFFIXES = (
    "fulness",
    "iness",
    "ness",
    "ment",
    "ful",
    "ing",
    "ity",
    "ous",
    "ed",
    "ly",
    "ry",
    "er",
    "ic",
    "ia",
    "y",
    "e",
    "s",
)
_STOP = {"at", "and", "the", "of", "a"}


def word_core(word: str) -> str:
    """Crude stem: lower case, one common suffix off (happiness -> happ, angry -> ang, calmness -> calm)."""
    w = word.strip().lower()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def related(a: str, b: str) -> bool:
    """Same word or an obvious inflection/derivation. Errs on the side of 'related' (then a list word is dropped)."""
    a, b = a.lower(), b.lower()
    ca, cb = word_core(a), word_core(b)
    (_, c_short), (long, c_long) = sorted([(a, ca), (b, cb)], key=lambda p: len(p[1]))
    if a == b or ca == cb:
        return True
    if len(c_short) >= 3 and (long.startswith(c_short) or c_long.startswith(c_short)):
        return True
    if len(c_short) >= 4 and c_short in long:
        return True
    common = len(os.path.commonprefix([ca, cb]))
    return common >= 5 and common >= 0.75 * len(c_short)


def split_words(label: str) -> set[str]:
    """A label and its parts: 'angry, aggressive' -> {angry, aggressive}; 'laid-back' -> {laid-back, laid, back}."""
    out = {label.lower().strip()}
    for part in label.lower().replace("_", " ").replace(",", " ").replace("-", " ").split():
        out.add(part)
    out |= {p.strip() for p in label.lower().replace("_", " ").split(",")}
    return {w for w in out if w and w not in _STOP}


def evaluation_words(taxonomies: dict, russell: dict, gems: dict) -> set[str]:
    """Every word a held-out measure reads, with phrase parts; plus the reserved new-user words."""
    labels = [label for v in VOCABS for label in taxonomies[v]["labels"]] + list(russell["angles_degrees"])
    labels += [g for gs in gems["second_order_factors"].values() for g in gs] + list(gems["second_order_factors"])
    labels += list(gems["emotify_labels_to_gems"]) + LATENT_EMOTIONS
    labels += [w for group in NEW_USER_WORDS for w in group]
    return set().union(*(split_words(label) for label in labels))


def check_disjoint(candidates, forbidden, name: str = "candidates") -> None:
    """Raise ValueError listing every candidate word that equals or inflects a forbidden word."""
    forbidden = set().union(*(split_words(f) for f in forbidden)) if forbidden else set()
    clashes = sorted(
        {f"{c}~{f}" for c in candidates for part in split_words(c) for f in forbidden if related(part, f)}
    )
    if clashes:
        raise ValueError(f"{name} overlap words they must avoid (word~avoided word): {', '.join(clashes)}")


def check_word_lists(norms: dict) -> None:
    """Raise unless pole and dev words avoid every held-out word, and pole words avoid dev words."""
    held_out = evaluation_words(
        {v: {"labels": ls} for v, ls in norms["vocabularies"]["vocabularies"].items()},
        norms["russell_1980_circumplex"],
        norms["gems_zentner_2008"],
    )
    poles = [w for d in (VALENCE_POLES, AROUSAL_POLES) for pn in d.values() for ws in pn for w in ws]
    dev = [w for ws in DEV_GROUPS.values() for w in ws]
    check_disjoint(poles, held_out, "pole words")
    check_disjoint(dev, held_out, "dev words")
    check_disjoint(poles, dev, "pole words (against the dev words)")
