# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5 · Named-entity extraction: a bidirectional LSTM, character features and a CRF (many to many, Tx = Ty)
#
# Named-entity extraction marks the names in a text: people, places, organisations,
# dates, times, amounts of money and percentages — the lecture's PERSON, LOCATION,
# ORGANIZATION, DATE, TIME, MONEY, PERCENT. One output per input word (Tx = Ty), in
# the **BIO** scheme: `B-X` begins an entity of type X, `I-X` continues it, `O` is
# outside any entity:
#
#     Maria   Santos   joined   Acme    Corp    on  May    3      ,  2021
#     B-PER   I-PER    O        B-ORG   I-ORG   O   B-DATE I-DATE I-DATE I-DATE
#
# Whether a word is a name often depends on what comes **after** it. The lecture's
# example: "I was trying really hard to get a hold of ___. Louise, finally
# answered" — the blank depends on words that come later. Here: is "Florence" a
# person or a city? "Florence said …" versus "Florence is a city …". A unidirectional
# RNN tags "Florence" before it has read the verb; a **bidirectional** RNN reads the
# sentence in both directions and uses both: `ŷ<t> = g(W_y [→a<t>, ←a<t>] + b_y)`.
#
# We generate sentences from word lists and templates, train a unidirectional and a
# bidirectional LSTM tagger and compare entity-level F1 (an entity counts only if its
# type and both boundaries are right). Then the real test: **prose the generator never
# produced** — the lecture's own Einstein paragraph and a paragraph about Marie Curie,
# whose gold entities are in `tutorials/data/`. There over a third of the words, and
# every name, are outside the training vocabulary, so a tagger that reads only word
# ids sees `<unk>` wherever it matters most.
# Two standard additions fix that (Lample et al. 2016; Ma & Hovy 2016):
# **character-level word features** (a small bidirectional LSTM reads each word's
# letters, so an unknown word still shows its capitals, digits and suffix) and a
# **CRF output layer** (transition scores between tags and Viterbi decoding, so the
# tags of a sentence are chosen together and `I-X` never follows `O`).

# %%
import argparse
import os
import time
from pathlib import Path

import numpy as np

import tinyseq as ts
from tinyseq.data import SequenceDataset, Vocab, read_conll, word_tokenize
from tinyseq.metrics import bio_spans, entity_f1
from tinyseq.models import SequenceTagger
from tinyseq.trainer import Trainer

parser = argparse.ArgumentParser(description=__doc__)
# in a notebook there is no command line: TINYSEQ_TUTORIAL_QUICK=1 and
# TINYSEQ_TUTORIAL_FIGURES=DIR stand for --quick and --figures DIR
parser.add_argument("--quick", action="store_true",
                    default=os.environ.get("TINYSEQ_TUTORIAL_QUICK", "0") not in ("", "0"),
                    help="short run (CI); or TINYSEQ_TUTORIAL_QUICK=1")
parser.add_argument("--figures", default=os.environ.get("TINYSEQ_TUTORIAL_FIGURES") or None,
                    help="folder for the PNG figures; or TINYSEQ_TUTORIAL_FIGURES=DIR")
args, _ = parser.parse_known_args()  # in a notebook, sys.argv holds the kernel's flags
QUICK = args.quick
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(args.figures) if args.figures else HERE / "figures" / ("quick" if QUICK else "")
START = time.perf_counter()

if QUICK:
    N_TRAIN, N_TEST, STEPS, HIDDEN = 1500, 300, 120, 32
else:
    N_TRAIN, N_TEST, STEPS, HIDDEN = 12000, 2000, 1500, 64

# %% [markdown]
# ## The real paragraphs: the test set the generator never sees
#
# `tutorials/data/einstein.txt` is the lecture's paragraph; `curie.txt` is an
# encyclopedic paragraph about Marie Curie written for this tutorial. Their gold
# entities (`einstein.conll`, `curie.conll`, one `token tag` per line) follow the
# CoNLL convention: titles such as "President" are not part of a name, and events,
# prizes, documents and nationality words ("World War II", "Nobel Prize", "Russell-Einstein
# Manifesto", "American") are none of our types, so they are `O`. Nothing below is
# tuned on them: they are read here only so that the generator's **name lists** can
# leave out every person, place and organisation word in them — each of those names is
# unseen in training, as names in real prose are.
#
# The raw text is split into words by `tinyseq.data.word_tokenize`, which keeps
# abbreviations ("U.S.", "D.") and numbers whole and splits punctuation off; the
# tokens must be those of the gold files.

# %%
DATA = HERE / "data"
REAL = {}
for name in ("einstein", "curie"):
    gold = read_conll(DATA / f"{name}.conll")
    tokens = word_tokenize(" ".join((DATA / f"{name}.txt").read_text(encoding="utf-8").split()))
    assert tokens == [w for words, _ in gold for w in words], f"{name}: tokenizer and gold file disagree"
    REAL[name] = gold
    print(f"{name}: {len(tokens)} tokens, {sum(len(bio_spans(t)) for _, t in gold)} gold entities")
HELD_OUT = {w for gold in REAL.values() for words, tags in gold for w, t in zip(words, tags)
            if t[2:] in ("PERSON", "LOCATION", "ORGANIZATION")}
print("the lecture's paragraph, first sentence:")
print("  ", " ".join(f"{w}/{t}" for w, t in zip(*REAL["einstein"][0])))

# %% [markdown]
# ## Generating sentences
#
# Word lists for each entity type, and sentence templates with slots. Templates are
# where the context comes from: "… reported a profit of {MONEY}", "{PERSON} said …".
# A few names are **ambiguous** — Florence, Jordan, Victoria, Sydney … are people and
# places — and appear at the start of a sentence, where only the words after them
# tell which they are.
#
# Real prose differs from short news templates in ways the first version of this
# tutorial missed, so the generator also writes: biographical and historical
# sentences full of common lower-case words, sentences with no entity at all that
# start with a capitalised common word ("He", "Later", "This"), years from 1700 on,
# titles before names ("President", "Professor" — tagged `O`), middle initials,
# surnames alone, place pairs ("Lyon, France") and organisation names of several
# words ("University of Lyon", "Institute for Marine Research").

# %%
def keep(words):
    """The names of a list that are not in the real paragraphs (see above)."""
    return [w for w in words if not HELD_OUT.intersection(w.split())]


FIRST = keep(["Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Fatima", "John", "Yuki", "Pedro",
              "Anna", "Mohammed", "Lucia", "David", "Ingrid", "Kofi", "Elena", "Rahul", "Sofia", "Tom",
              "Hannah", "Ahmed", "Chloe", "Ivan", "Grace", "Luis", "Priya", "Marco", "Nina", "Omar",
              "Thomas", "Charles", "Helen", "Ludwig", "Ada", "Niels", "Rosa", "Karl", "Emily", "Otto",
              "Clara", "Isaac", "Simone", "Werner", "Edith", "Enrico", "Lise", "Dmitri", "Harriet"])
LAST = keep(["Santos", "Smith", "Khan", "Zhang", "Petrova", "Garcia", "Haddad", "Miller", "Tanaka",
             "Silva", "Novak", "Rahman", "Rossi", "Cohen", "Larsen", "Mensah", "Popescu", "Sharma",
             "Moreau", "Brown", "Weber", "Ali", "Dubois", "Kowalski", "Nguyen", "Lopez", "Okafor",
             "Darwin", "Fermi", "Meitner", "Bohr", "Lovelace", "Tesla", "Planck", "Noether", "Faraday",
             "Lindqvist", "Hoffmann", "Castellano", "Baptiste", "Oyelaran", "Fitzgerald", "Yamamoto"])
CITIES = keep(["Lisbon", "Nairobi", "Toronto", "Berlin", "Mumbai", "Lima", "Oslo", "Cairo", "Seoul",
               "Madrid", "Chicago", "Warsaw", "Dublin", "Manila", "Accra", "Vienna", "Quito", "Lyon",
               "New York", "Buenos Aires", "Cape Town", "Hong Kong", "San Francisco", "Rio de Janeiro",
               "Zurich", "Geneva", "Edinburgh", "Krakow", "Boston", "Munich", "Kyoto", "Bologna"])
REGIONS = keep(["France", "Germany", "Brazil", "Kenya", "India", "Japan", "Canada", "Italy", "Poland",
                "Egypt", "Peru", "Norway", "Texas", "Ontario", "Bavaria", "Scotland", "California",
                "Switzerland", "Austria", "Ghana", "New Mexico", "South Africa", "the Netherlands"])
AMBIGUOUS = ["Florence", "Jordan", "Victoria", "Sydney", "Charlotte", "Austin", "Regina",
             "Adelaide", "Lincoln", "Chelsea", "Georgia", "Eugene"]
ORG_HEAD = keep(["Acme", "Globex", "Initech", "Northwind", "Vandelay", "Stark", "Wayne", "Umbrella",
                 "Cyberdyne", "Soylent", "Hooli", "Contoso", "Tyrell", "Aperture", "Massive Dynamic"])
ORG_TAIL = ["Corp", "Inc", "Group", "Bank", "Holdings", "Labs", "Airlines", "Foundation"]
ORG_FIXED = keep(["United Nations", "World Bank", "Red Cross", "National Museum", "City Council",
                  "Supreme Court", "Royal Society", "European Union", "Bank of England"])
FIELDS = ["Sciences", "Arts", "Medicine", "Music", "History", "Engineering", "Technology",
          "Economics", "Law", "Agriculture", "Research", "Languages", "Mathematics"]
FIELD_ADJ = ["Marine", "Applied", "Modern", "Public", "Social", "Political", "Tropical", "Nuclear"]
TITLES = ["President", "Professor", "General", "Senator", "Judge", "King", "Queen", "Sir", "Dr.",
          "Mr.", "Mrs.", "Ms.", "Prof.", "Captain", "Minister", "Chancellor", "Bishop", "Dame"]
NATIONS = ["American", "French", "German", "British", "Italian", "Polish", "Japanese", "Indian",
           "Brazilian", "Kenyan", "Canadian", "Spanish", "Russian", "Dutch", "Swiss", "Chinese"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
print(f"name lists after leaving out the paragraphs' names: {len(FIRST)} first names, {len(LAST)} "
      f"surnames, {len(CITIES)} cities, {len(REGIONS)} regions")


def pick(rng, items):
    return items[rng.integers(len(items))]


def person(rng):
    r = rng.random()
    if r < 0.4:
        return [pick(rng, FIRST), pick(rng, LAST)]
    if r < 0.5:  # a middle initial: "Ada B. Lovelace"
        return [pick(rng, FIRST), chr(ord("A") + int(rng.integers(26))) + ".", pick(rng, LAST)]
    if r < 0.72:  # a surname alone, as prose refers to a person again
        return [pick(rng, LAST)]
    return [pick(rng, FIRST if r < 0.9 else AMBIGUOUS)]


def location(rng):
    r = rng.random()
    if r < 0.1:
        return [pick(rng, AMBIGUOUS[: len(AMBIGUOUS) // 2])]
    return pick(rng, CITIES if r < 0.65 else REGIONS).split()


def organization(rng):
    form = rng.integers(8)
    if form == 0:
        return pick(rng, ORG_FIXED).split()
    if form == 1:
        return ["University", "of"] + pick(rng, CITIES).split()
    if form == 2:
        return pick(rng, CITIES).split() + ["Academy", "of", pick(rng, FIELDS)]
    if form == 3:
        return ["Institute", "for", pick(rng, FIELD_ADJ), pick(rng, FIELDS)]
    if form == 4:
        return [pick(rng, LAST), pick(rng, ["Institute", "Foundation", "Laboratory", "College"])]
    if form == 5:
        return ["National", pick(rng, FIELDS), pick(rng, ["Council", "Agency", "Society"])]
    return pick(rng, ORG_HEAD).split() + [pick(rng, ORG_TAIL)]


def year(rng):
    return str(rng.integers(1700, 2031))


def date(rng):
    day, month = str(rng.integers(1, 29)), pick(rng, MONTHS)
    form = rng.integers(8)
    if form == 0:
        return [month, day, ",", year(rng)]
    if form == 1:
        return [day, month, year(rng)]
    if form == 2:
        return [pick(rng, WEEKDAYS)]
    if form == 3:
        return [month, year(rng)]
    if form == 4:
        return [pick(rng, WEEKDAYS), ",", month, day]
    if form == 5:
        return [str(rng.integers(170, 203)) + "0s"]  # a decade: the 1920s
    return [year(rng)]


def time_(rng):
    form = rng.integers(3)
    if form == 0:
        return [f"{rng.integers(1, 13)}:{pick(rng, ['00', '15', '30', '45'])}", pick(rng, ["am", "pm"])]
    if form == 1:
        return [str(rng.integers(1, 13)), pick(rng, ["am", "pm"])]
    return [f"{rng.integers(0, 24):02d}:{pick(rng, ['00', '10', '30', '50'])}"]


def money(rng):
    amount = pick(rng, [str(rng.integers(2, 999)), f"{rng.integers(1, 99)}.{rng.integers(1, 9)}",
                        f"{rng.integers(1, 99)},{rng.integers(0, 1000):03d}"])
    form = rng.integers(3)
    if form == 0:
        return ["$", amount] + ([pick(rng, ["million", "billion"])] if rng.random() < 0.5 else [])
    if form == 1:
        return [amount, pick(rng, ["dollars", "euros", "pounds"])]
    return ["€", amount, pick(rng, ["million", "billion"])]


def percent(rng):
    value = pick(rng, [str(rng.integers(1, 99)), f"{rng.integers(0, 20)}.{rng.integers(1, 9)}"])
    return [value, "%"] if rng.random() < 0.5 else [value, "percent"]


MAKERS = {"PERSON": person, "LOCATION": location, "ORGANIZATION": organization, "DATE": date,
          "TIME": time_, "MONEY": money, "PERCENT": percent}
# {YEAR} is a DATE that is a year; {PLACE} a location or a "city , region" pair;
# {NAT} a nationality word, {TITLE} a title (both O)
TEMPLATES = [
    "{PERSON} flew to {LOCATION} on {DATE} .",
    "{ORGANIZATION} reported a profit of {MONEY} , up {PERCENT} from last year .",
    "At {TIME} on {DATE} , {PERSON} of {ORGANIZATION} arrived in {LOCATION} .",
    "{PERSON} , a spokesperson for {ORGANIZATION} , said the deal was worth {MONEY} .",
    "Shares of {ORGANIZATION} fell {PERCENT} in {LOCATION} on {DATE} .",
    "The meeting in {LOCATION} starts at {TIME} .",
    "{PERSON} met {PERSON} in {PLACE} .",
    "Inflation in {LOCATION} rose to {PERCENT} in {DATE} , according to {ORGANIZATION} .",
    "{ORGANIZATION} hired {PERSON} as chief executive .",
    "Tickets cost {MONEY} and the show begins at {TIME} on {DATE} .",
    "According to {PERSON} , about {PERCENT} of the budget , or {MONEY} , went to {ORGANIZATION} .",
    "{PERSON} was born in {PLACE} on {DATE} .",
    "We will call {PERSON} at {TIME} tomorrow .",
    "The {ORGANIZATION} office in {LOCATION} closed on {DATE} .",
    "The company paid {MONEY} for a building in {LOCATION} .",
    "{PERSON} will visit {ORGANIZATION} on {DATE} at {TIME} .",
    "Sales grew by {PERCENT} to {MONEY} in {DATE} .",
    "On {DATE} , {PERSON} opened a new office for {ORGANIZATION} in {PLACE} .",
    "The train from {LOCATION} to {LOCATION} leaves at {TIME} .",
    "{PERSON} lost {MONEY} when shares of {ORGANIZATION} dropped {PERCENT} .",
    "Police in {LOCATION} said {PERSON} was seen there at {TIME} .",
    "{ORGANIZATION} and {ORGANIZATION} agreed on {DATE} to merge .",
    # biography and history: common words around the names, older dates
    "In {YEAR} , {PERSON} moved to {PLACE} with her family .",
    "In {YEAR} , {PERSON} moved to {PLACE} with his family and found work as a clerk .",
    "{PERSON} studied {FIELD} at {ORGANIZATION} and later taught in {LOCATION} .",
    "After the war , {PERSON} returned to {LOCATION} , where he wrote his first book .",
    "She was elected to {ORGANIZATION} in {YEAR} and served until her death in {YEAR} .",
    "He left {LOCATION} in {YEAR} and never went back to {LOCATION} .",
    "The {NAT} writer {PERSON} spent the last years of his life in {PLACE} .",
    "Later , {PERSON} worked with the {NAT} engineer {PERSON} on a new kind of engine .",
    "{TITLE} {PERSON} signed the treaty in {LOCATION} on {DATE} .",
    "He wrote a letter to {TITLE} {PERSON} asking for money for the new school .",
    "{PERSON} became a {NAT} citizen in {YEAR} and lived in {PLACE} until {YEAR} .",
    "During the {DECADE} , {PERSON} was a professor at {ORGANIZATION} .",
    "The museum was founded in {YEAR} by {TITLE} {PERSON} and opened to the public in {YEAR} .",
    "{PERSON} , who had been a student of {PERSON} , joined {ORGANIZATION} in {YEAR} .",
    "Many people in {LOCATION} did not trust the new government .",
    "This work led to a prize from {ORGANIZATION} in {YEAR} .",
    "With the help of {PERSON} , she built a small laboratory in {PLACE} .",
    "Her husband , {PERSON} , died in {LOCATION} on {DATE} .",
    "The {NAT} army entered {LOCATION} in {YEAR} and stayed for two years .",
    "{PERSON} was a member of {ORGANIZATION} and a friend of {PERSON} .",
    "In a speech at {ORGANIZATION} , {TITLE} {PERSON} warned of the danger of a new war .",
    # no entity at all: capitalised common words that are not names
    "He did not agree with the plan , but he signed it anyway .",
    "She was one of the first women to study there .",
    "They lived in a small house near the river for many years .",
    "This was the most important discovery of the century .",
    "It was a cold morning and most of the roads were closed .",
    "Later , the idea was used to build better machines .",
    "However , the results of the new method were not clear at first .",
    "The young teacher supported the students and largely ignored the critics .",
    "His theory explained the motion of the planets and the structure of light .",
    "Most of the letters were written by hand and sent by ship .",
    "The new rules were meant to protect workers from danger at the factory .",
    "After many years of research , the team published a long report .",
]
# The ambiguous word first: only what follows tells person from place.
AMBIGUOUS_TEMPLATES = [
    ("{A} said that the plan would cost {MONEY} .", "PERSON"),
    ("{A} told reporters on {DATE} that {ORGANIZATION} was wrong .", "PERSON"),
    ("{A} , who works for {ORGANIZATION} , answered at {TIME} .", "PERSON"),
    ("{A} is a city in the south , near {LOCATION} .", "LOCATION"),
    ("{A} is where {ORGANIZATION} has its headquarters .", "LOCATION"),
    ("{A} , the capital of the region , hosted {PERSON} on {DATE} .", "LOCATION"),
]


def fill(rng, template, forced=None):
    """Tokens and BIO tags of one filled template; ``forced`` = the type of {A}."""
    tokens, tags = [], []

    def entity(words, kind):
        tokens.extend(words)
        tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1))

    def outside(words):
        tokens.extend(words)
        tags.extend(["O"] * len(words))

    for piece in template.split():
        if piece == "{A}":
            entity([pick(rng, AMBIGUOUS)], forced)
        elif piece in ("{YEAR}", "{DECADE}"):
            entity([year(rng) if piece == "{YEAR}" else str(rng.integers(170, 203)) + "0s"], "DATE")
        elif piece == "{PLACE}":
            if rng.random() < 0.35:  # "Lyon , France": two places
                entity(pick(rng, CITIES).split(), "LOCATION")
                outside([","])
                entity(pick(rng, REGIONS).split(), "LOCATION")
            else:
                entity(location(rng), "LOCATION")
        elif piece in ("{NAT}", "{TITLE}"):
            outside([pick(rng, NATIONS if piece == "{NAT}" else TITLES)])
        elif piece == "{FIELD}":  # a subject of study, in lower case
            outside([pick(rng, FIELDS).lower()])
        elif piece == "{PERSON}" and rng.random() < 0.15:  # a title before a name
            outside([pick(rng, TITLES)])
            entity(person(rng), "PERSON")
        elif piece.startswith("{"):
            entity(MAKERS[piece[1:-1]](rng), piece[1:-1])
        else:
            outside([piece])
    return tokens, tags


def make_sentence(rng):
    if rng.random() < 0.2:
        template, kind = pick(rng, AMBIGUOUS_TEMPLATES)
        return fill(rng, template, kind)
    return fill(rng, pick(rng, TEMPLATES))


# Every fourth person, city and company name appears only in test sentences: the test
# measures how well the tagger recognises names it has never seen.
TEST_ONLY = set(FIRST[3::4] + LAST[3::4] + [w for c in CITIES[3::4] for w in c.split()]
                + ORG_HEAD[3::4])


def training_sentence(rng):
    while True:
        tokens, tags = make_sentence(rng)
        if not TEST_ONLY.intersection(tokens):
            return tokens, tags


rng = np.random.default_rng(0)
for _ in range(4):
    tokens, tags = make_sentence(rng)
    print("  ".join(f"{w}/{t}" for w, t in zip(tokens, tags)))

# %% [markdown]
# ## Data
#
# Words and tags become ids. Words not in the training vocabulary become `<unk>`. We
# also replace 10% of the training words at random by `<unk>`: the tagger then learns
# to tag a word it has never seen from its context ("flew to ___ on"), which is what
# it must do on real text. Each word's **characters** become ids too, from a
# character vocabulary of the training words — a replaced word keeps its characters,
# which is exactly the situation of an unknown word in real prose.

# %%
train_sents = [training_sentence(np.random.default_rng([1, i])) for i in range(N_TRAIN)]
test_sents = [make_sentence(np.random.default_rng([2, i])) for i in range(N_TEST)]
vocab = Vocab.build([t for t, _ in train_sents], level="word")
chars = Vocab.build([[c for w in t for c in w] for t, _ in train_sents], level="char")
tag_vocab = Vocab(sorted({g for _, tags in train_sents for g in tags}), specials=())
print(f"vocabulary {len(vocab)} words, {len(chars)} characters; {len(tag_vocab)} tags: {tag_vocab.itos}")
real_words = [w for gold in REAL.values() for words, _ in gold for w in words]
print(f"words of the real paragraphs outside the vocabulary: "
      f"{np.mean([w not in vocab for w in real_words]):.0%}")


def char_ids(tokens):
    return [np.array(chars.encode(list(w))) for w in tokens]


def dataset(sents, unk_rate=0.0, seed=0, **options):
    r = np.random.default_rng(seed)
    xs, ys = [], []
    for tokens, tags in sents:
        ids = np.array(vocab.encode(tokens))
        if unk_rate:
            ids[r.random(len(ids)) < unk_rate] = vocab.unk_id
        xs.append(ids)
        ys.append(np.array(tag_vocab.encode(tags)))
    return SequenceDataset(xs, ys, y_is_sequence=True, chars=[char_ids(t) for t, _ in sents], **options)


train_data = dataset(train_sents, unk_rate=0.1, batch_size=32, bucket=4)
test_data = dataset(test_sents, batch_size=128, shuffle=False)
# the ambiguous-first-word sentences on their own
amb_test = [fill(np.random.default_rng([3, i]), *AMBIGUOUS_TEMPLATES[i % len(AMBIGUOUS_TEMPLATES)])
            for i in range(N_TEST // 4)]
amb_data = dataset(amb_test, batch_size=128, shuffle=False)

# %% [markdown]
# ## Unidirectional vs bidirectional
#
# `SequenceTagger` = embedding → recurrent layer → linear layer per step, with a
# masked per-step cross-entropy. With `bidirectional=True` its `ts.nn.Recurrent`
# runs a second LSTM from right to left and concatenates both states per step.
# Given the tag names, evaluation reports entity-level F1.

# %%
def predictions(model, data):
    out = []
    for batch in data.batches(0):
        out += [[tag_vocab.itos[i] for i in p] for p in model.predict(batch)]
    return out


def first_word_accuracy(model, sents, data):
    """How often the ambiguous first word gets the right type."""
    return float(np.mean([p[0] == tags[0] for p, (_, tags) in zip(predictions(model, data), sents)]))


def train(**options):
    ts.manual_seed(0)
    model = SequenceTagger(num_tags=len(tag_vocab), vocab_size=len(vocab), embedding_dim=48,
                           hidden_size=HIDDEN, cell="lstm", tag_names=tag_vocab.itos, **options)
    trainer = Trainer(model, train_data, lr=3e-3, clip_norm=1.0, max_steps=STEPS, epochs=1000,
                      progress=False)
    t0 = time.perf_counter()
    trainer.fit()
    return model, trainer, time.perf_counter() - t0


taggers, scores = {}, {}
for bidirectional in (False, True):
    name = "bidirectional" if bidirectional else "unidirectional"
    model, trainer, seconds = train(bidirectional=bidirectional)
    metrics = trainer.evaluate(test_data)
    amb = first_word_accuracy(model, amb_test, amb_data)
    taggers[name], scores[name] = model, (metrics["entity_f1"], metrics["accuracy"], amb, seconds)
    print(f"{name:>14}: entity F1 {metrics['entity_f1']:.3f}, token accuracy "
          f"{metrics['accuracy']:.1%}, ambiguous first word {amb:.1%} ({seconds:.0f} s)", flush=True)

# %%
print("| LSTM tagger | entity F1 | token accuracy | ambiguous first word (person/place) | time |")
print("|---|---|---|---|---|")
for name, (f1, acc, amb, seconds) in scores.items():
    print(f"| {name} | {f1:.3f} | {acc:.1%} | {amb:.1%} | {seconds:.0f} s |")

# %% [markdown]
# Both taggers do well on most entities — the words themselves ("$", "percent",
# "Corp", month names) and the left context give them away, even for names they
# never saw in training. The difference is in the ambiguous names at the start of a
# sentence: the unidirectional tagger must decide on "Florence" before reading
# "said" or "is a city", so it can only guess (about half right); the bidirectional
# one has read the whole sentence and gets them right. (Generated test sentences
# come from the same templates as the training ones, which is why the scores are
# this high; the real paragraphs are the harder test.)
#
# ## Character features and a CRF, tested on real prose
#
# `SequenceTagger(char_features=True)` adds `ts.nn.CharFeatures`: a bidirectional
# LSTM over each word's characters (all words of a batch at once, padded characters
# and words masked), whose two final states join the word embedding. `crf=True` adds
# `ts.nn.CRF`: a score for every tag-to-tag transition, trained by the sentence's
# negative log-likelihood (the forward algorithm sums over all tag sequences) and
# decoded by Viterbi; since the tags are BIO, moves such as `O → I-PERSON` are ruled
# out. Both models are bidirectional, trained like the one above.

# %%
def real_prose_scores(model, name):
    words = [w for w, _ in REAL[name]]
    xs = [np.array(vocab.encode(w)) for w in words]
    data = SequenceDataset(xs, [np.zeros(len(x), dtype=np.int64) for x in xs], batch_size=64,
                           y_is_sequence=True, shuffle=False, chars=[char_ids(w) for w in words])
    pred = predictions(model, data)
    return entity_f1(pred, [t for _, t in REAL[name]]), pred


VARIANTS = {"word embeddings only": {}, "+ character features": {"char_features": True},
            "+ character features + CRF": {"char_features": True, "crf": True}}
CHAR_SIZES = {"char_vocab_size": len(chars), "char_embedding_dim": 16, "char_hidden_size": 24}
table, tagged = {}, {}
for label, options in VARIANTS.items():
    if not options:
        model, seconds = taggers["bidirectional"], scores["bidirectional"][3]
    else:
        model, _, seconds = train(bidirectional=True, **options, **CHAR_SIZES)
    test = entity_f1(predictions(model, test_data), [t for _, t in test_sents])
    real = {name: real_prose_scores(model, name) for name in REAL}
    table[label] = (test, real["einstein"][0], real["curie"][0], seconds)
    tagged[label] = real["einstein"][1]
    print(f"{label:>28}: generated test F1 {test['f1']:.3f}, lecture paragraph F1 "
          f"{real['einstein'][0]['f1']:.3f}, Curie paragraph F1 {real['curie'][0]['f1']:.3f} "
          f"({seconds:.0f} s)", flush=True)


def prf(m):
    return f"{m['precision']:.2f} / {m['recall']:.2f} / {m['f1']:.2f}"


print("| bidirectional LSTM tagger | generated test P / R / F1 | lecture paragraph P / R / F1 "
      "| Curie paragraph P / R / F1 | training time |")
print("|---|---|---|---|---|")
for label, (test, einstein, curie, seconds) in table.items():
    print(f"| {label} | {prf(test)} | {prf(einstein)} | {prf(curie)} | {seconds:.0f} s |")

# %% [markdown]
# The lecture's paragraph, tagged by the last model (gold entities after the arrow
# where they differ):

# %%
best_label = list(VARIANTS)[-1]
for (words, gold), pred in zip(REAL["einstein"], tagged[best_label]):
    found = sorted(bio_spans(pred), key=lambda span: span[1])
    want = sorted(bio_spans(gold), key=lambda span: span[1])
    print(" ".join(words))
    print("   found:", "; ".join(f"{kind}: {' '.join(words[a:b])}" for kind, a, b in found))
    if found != want:
        print("   gold: ", "; ".join(f"{kind}: {' '.join(words[a:b])}" for kind, a, b in want))


# %%
def plot(path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the figure (pip install 'tinyseq[plot]')")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    groups = ["generated test", "lecture paragraph", "Curie paragraph"]
    width = 0.8 / len(table)
    for k, (label, (test, einstein, curie, _)) in enumerate(table.items()):
        xs = np.arange(len(groups)) + (k - (len(table) - 1) / 2) * width
        ax.bar(xs, [test["f1"], einstein["f1"], curie["f1"]], width, label=label)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("entity F1")
    ax.set_ylim(0, 1.05)
    ax.set_title("named entities: generated sentences vs real prose")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


plot(FIGURES / "05_real_prose_f1.png")

# %% [markdown]
# On the generated test all three are near perfect — it comes from the templates they
# trained on. On real prose the word-only tagger sees `<unk>` for every name, and an
# unknown word may be a name or a rare common word: it finds few of the lecture's
# entities. Character features let it tell "Einstein" from "nuclear" by their shape;
# that is the large step (lecture paragraph F1 0.32 → 0.82 in the full run). The CRF
# makes the tags of a span agree and rules out `I-X` after `O`; on the generated test
# it removes most of the remaining errors, on the two paragraphs its effect is within
# what one or two entities change (each paragraph has about 20, so one entity moves F1
# by about 0.05: +0.02 on the lecture's, −0.07 on Curie's). What stays hard is what the
# generator has no pattern for — "U.S." (an abbreviation it never wrote), "Manhattan
# Project", "World War II" and "American" (not entities of our types, but capitalised
# like names) — and types that need knowledge rather than the sentence.
#
# ## Result
#
# Measured in full mode on a shared 2-core CPU (one BLAS thread; see tutorials/README.md):
# entity F1 on the generated test 0.920 unidirectional vs 0.990 bidirectional, the
# ambiguous first word right 50% vs 100% of the time; entity F1 on the lecture's
# paragraph 0.32 with word embeddings only, 0.82 with character features, 0.84 with
# character features and the CRF (Curie paragraph 0.57 / 0.74 / 0.67); 77 s in all.

# %%
uni, bi = scores["unidirectional"], scores["bidirectional"]
lecture = " / ".join(f"{table[label][1]['f1']:.2f}" for label in VARIANTS)
print(f"RESULT: entity F1 unidirectional {uni[0]:.3f} vs bidirectional {bi[0]:.3f}; ambiguous "
      f"first word {uni[2]:.0%} vs {bi[2]:.0%}; lecture paragraph entity F1 words / +chars / "
      f"+chars+CRF {lecture}; total {time.perf_counter() - START:.0f} s")
