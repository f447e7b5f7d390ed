"""The answer normalization every rule judge reads a final answer through.

It follows the VQAv2 evaluation's answer processor (`vqaEval.py`'s processPunctuation and processDigitArticle,
run before exact matching by lmms-eval's `EvalAIAnswerProcessor` and VLMEvalKit's `vqa_eval.py`): lowercase;
punctuation to spaces, keeping apostrophes and a period or comma inside a number (`3.5`, `1,000`); number words to
digits; the articles a/an/the dropped; a contraction written without its apostrophe given one (`isnt` -> `isn't`);
whitespace runs to one space.

Where it departs from VQAv2: number words run from zero to twenty (VQAv2: none and zero to ten) and "a dozen" is 12;
"one" after a determiner ("the red one", "each one") is a pronoun, not 1; a number word joined to a word by a hyphen
("twenty-one", "one-third") is left as it is rather than misread; markdown bold (`**B**`) goes first (VLMEvalKit's
`can_infer_option` drops `*` too); and only the contractions of negations and copulas are mapped, the ones a judge
reads (VQAv2 maps about a hundred).
"""

from __future__ import annotations

import re

NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
} | {"none": "0"}
NUMBER_WORD = re.compile(rf"(?<![\w'’-])(?:{'|'.join(NUMBER_WORDS)})(?![\w'’-])", re.IGNORECASE)
DOZEN = re.compile(r"(?<![\w-])(?:(half)\s+)?(?:a|one)\s+dozen(?![\w-])", re.IGNORECASE)
# "one" as a pronoun: "the red one", "this one", "each one", "no one"
PRONOUN_ONE = re.compile(r"\b(?:the|this|that|which|each|every|any|another|no)\s+(?:[a-z]+\s+)?$", re.IGNORECASE)
BOLD = re.compile(r"(?<![\w*])(\*\*|__)(?=\S)(.+?)(?<=\S)\1(?![\w*])")  # "**B**"; not "x**2 + y**2"
ARTICLES = frozenset({"a", "an", "the"})
CONTRACTIONS = {
    word.replace("'", ""): word
    for word in (
        "ain't aren't can't couldn't didn't doesn't don't hadn't hasn't haven't isn't mightn't mustn't needn't "
        "shouldn't wasn't weren't won't wouldn't it's that's there's what's they're you're we're i'm"
    ).split()
} | {"cannot": "can't"}
PUNCTUATION = re.compile(r"[.,](?!\d)|(?<!\d)[.,]|[^\w\s'.,]|_")  # a period or comma between digits stays


def strip_markdown(text: str) -> str:
    """`text` without markdown bold: "**B**" -> "B", "**Answer:** 3" -> "Answer: 3"."""
    return BOLD.sub(r"\2", text)


def number_words_to_digits(text: str) -> str:
    """`text` with its number words as digits ("There are three cats" -> "There are 3 cats", "a dozen" -> "12"),
    everything else as it was."""
    text = DOZEN.sub(lambda m: "6" if m[1] else "12", text)

    def digit(match: re.Match[str]) -> str:
        word = match[0].lower()
        if word == "one" and PRONOUN_ONE.search(text[max(0, match.start() - 30) : match.start()]):
            return match[0]
        return NUMBER_WORDS[word]

    return NUMBER_WORD.sub(digit, text)


def normalize_answer(text: str) -> str:
    """The VQAv2-style normal form two answers are compared in: "The colour is Dark-Red." -> "colour is dark red",
    "Three" -> "3", "It isnt a cat" -> "it isn't cat"."""
    text = number_words_to_digits(strip_markdown(text).replace("’", "'").lower())
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators
    words = (word.strip("'") for word in PUNCTUATION.sub(" ", text).split())
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word and word not in ARTICLES)
