"""Drug-name normalization: EMR prescription strings -> interaction (DrugBank) names.

Two steps, kept apart so each is testable on its own:

* :func:`~dpr_dist.data.drug_names.normalize_drug` (in :mod:`dpr_dist.data.drug_names`,
  with its word lists) is a pure string function: lowercase, accents and bracketed
  remarks, strengths and dosage forms removed, punctuation turned into spaces
  (``"Sodium Chloride 0.9%  Flush"`` -> ``"sodium chloride"``). It is idempotent.
* :class:`DrugNormalizer` maps a raw name to the canonical name of the interaction table,
  trying in order: the normalized name itself; a clinical abbreviation or US name
  (:data:`CLINICAL_ALIASES`: ``NS``, ``aspirin``, ``albuterol``); a synonym (e.g. from the
  DrugBank vocabulary); the name with salt and ester words removed (``"metoprolol
  tartrate"`` -> ``"Metoprolol"``), accepted only when what remains is a known name, so
  ``"potassium chloride"`` stays itself; finally the bracketed part of the raw string
  (``"Emtricitabine-Tenofovir (Truvada)"``). Names it cannot place stay as their normalized
  form: they remain in packages, with unknown relations.

Full-name matches (canonical, alias, synonym) come before salt stripping because a salt
form that the vocabulary lists as a synonym is a more specific match than its stripped
base. With :meth:`DrugNormalizer.from_vocabulary`, pass the interaction drugs as
``prefer``: synonyms are then taken from those drugs only, because the full vocabulary's
synonyms also name radiolabelled and experimental products ("sodium phosphate" is a
synonym of "Sodium phosphate P 32").

The vectorized helpers work on Arrow arrays through their dictionary of distinct values,
so each distinct raw string is normalized once per call however often it occurs.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpr_dist.data.drug_names import (
    CLINICAL_ALIASES, DOSAGE_WORDS, SALT_WORDS, bracket_contents, fold, normalize_drug,
)

__all__ = [  # the string function and its word lists live in dpr_dist.data.drug_names
    "CLINICAL_ALIASES", "DOSAGE_WORDS", "SALT_WORDS", "DrugNormalizer", "alignment_report",
    "base_names", "normalize_drug", "normalize_lists",
]


class DrugNormalizer:
    """Map raw EMR drug names to canonical interaction names.

    Args:
        names: Canonical names (e.g. the interaction table's drug names). They are
            returned unchanged (original spelling) when matched.
        synonyms: ``{synonym: canonical name}`` or ``(synonym, canonical)`` pairs; the
            canonical side must be one of ``names`` (others are ignored). A synonym
            claimed by several names is dropped unless exactly one of them is in
            ``prefer``.
        aliases: ``{normalized alias: normalized target}`` tried before the synonyms
            (default :data:`CLINICAL_ALIASES`; pass ``{}`` to disable).
        salt_words: Words removed in the salt-stripping step.
        prefer: Names that win ties when two canonical names normalize alike or a
            synonym is ambiguous (e.g. the drugs of the interaction table). Among the
            others a name that is already in normalized form wins, then the first.

    Example::

        norm = DrugNormalizer(["Metoprolol", "Sodium chloride", "Potassium chloride"])
        norm("Metoprolol Tartrate 25 mg Tab")   # 'Metoprolol'
        norm("Sodium Chloride 0.9%  Flush")     # 'Sodium chloride'
        norm("Multivitamins")                   # 'multivitamins' (unknown, kept)
    """

    def __init__(self, names: Iterable[str], synonyms: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 *, aliases: Mapping[str, str] | None = None, salt_words: Iterable[str] = SALT_WORDS,
                 prefer: Iterable[str] = ()) -> None:
        prefer_set = set(prefer)
        self._canonical: dict[str, str] = {}
        rank: dict[str, tuple[bool, bool]] = {}
        for name in names:
            if name is None:
                continue
            key = normalize_drug(name)
            if not key:
                continue
            # ties: preferred names first, then names that are already plain words
            # ("Phenol" over a long chemical name that also normalizes to "phenol")
            r = (name in prefer_set, fold(name) == key)
            if key not in rank or r > rank[key]:
                self._canonical[key], rank[key] = name, r
        known = set(self._canonical.values())
        claims: dict[str, set[str]] = {}
        pairs = synonyms.items() if isinstance(synonyms, Mapping) else synonyms
        for syn, target in pairs:
            if target not in known or not syn:
                continue
            key = normalize_drug(syn)
            if key and key not in self._canonical:
                claims.setdefault(key, set()).add(target)
        self._synonyms: dict[str, str] = {}
        for key, targets in claims.items():
            if len(targets) > 1:
                targets = targets & prefer_set
            if len(targets) == 1:
                self._synonyms[key] = next(iter(targets))
        self._aliases = dict(CLINICAL_ALIASES if aliases is None else aliases)
        self._salts = frozenset(salt_words)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_vocabulary(cls, vocab: str | pa.Table, *, prefer: Iterable[str] = (),
                        restrict_to: Iterable[str] | None = None, extra: Iterable[str] = (),
                        **kwargs) -> "DrugNormalizer":
        """Build from a DrugBank vocabulary (``Common name``, ``Synonyms`` split on `` | ``).

        Every common name (or those in ``restrict_to``) is a canonical target. Synonyms are
        taken only from the ``prefer`` drugs when ``prefer`` is given: the full vocabulary's
        synonyms also name radiolabelled and experimental products ("sodium phosphate"
        -> "Sodium phosphate P 32", "ns" -> "NS-2359").

        Args:
            vocab: Path / URI of the vocabulary CSV, or the table already read.
            prefer: The interaction drugs: they win ties and supply the synonyms.
            restrict_to: Keep only these common names as canonical targets.
            extra: More canonical names (e.g. the salt-free names seen in the EMR itself).
            **kwargs: Passed to the constructor (``aliases``, ``salt_words``).
        """
        if isinstance(vocab, str):
            from dpr_dist.data.io import read_file

            vocab = read_file(vocab)
        for col in ("Common name", "Synonyms"):
            if col not in vocab.column_names:
                raise ValueError(f"vocabulary: missing column {col!r} (have {vocab.column_names})")
        names = vocab["Common name"].cast(pa.string()).to_pylist()
        syn_lists = pc.split_pattern(pc.fill_null(vocab["Synonyms"].cast(pa.string()), ""), " | ").to_pylist()
        keep = None if restrict_to is None else set(restrict_to)
        prefer = set(prefer)
        canon, pairs = [], []
        for name, syns in zip(names, syn_lists):
            if not name or (keep is not None and name not in keep):
                continue
            canon.append(name)
            if not prefer or name in prefer:
                pairs.extend((s, name) for s in syns if s)
        return cls([*canon, *extra], pairs, prefer=prefer, **kwargs)

    # ------------------------------------------------------------------ lookup
    @property
    def names(self) -> frozenset[str]:
        """The canonical names this normalizer maps to."""
        return frozenset(self._canonical.values())

    def _known(self, key: str, synonyms: bool = True) -> str | None:
        """Canonical name for a normalized key: the name itself, an alias, a synonym."""
        hit = self._canonical.get(key)
        if hit is None and key in self._aliases:
            hit = self._canonical.get(self._aliases[key]) or self._synonyms.get(self._aliases[key])
        if hit is None and synonyms:
            hit = self._synonyms.get(key)
        return hit

    def lookup(self, raw: str | None) -> str | None:
        """Canonical name of ``raw``, or None when it is not a known drug."""
        key = normalize_drug(raw)
        if not key:
            return None
        hit = self._known(key)
        if hit is None:
            stripped = " ".join(w for w in key.split() if w not in self._salts)
            if stripped and stripped != key:
                hit = self._known(stripped)
        if hit is None:  # a bracketed brand or ingredient; synonyms are too loose here
            for inner in bracket_contents(raw):
                hit = self._known(inner, synonyms=False)
                if hit is not None:
                    break
        return hit

    def __call__(self, raw: str | None) -> str:
        """Canonical name of ``raw``, else its normalized form (``""`` for non-drugs)."""
        hit = self.lookup(raw)
        return hit if hit is not None else normalize_drug(raw)

    def normalize_array(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Map a string array (nulls stay null); each distinct value is normalized once."""
        return _map_strings(arr, self)

    def normalize_lists(self, arr: pa.ListArray | pa.ChunkedArray) -> pa.ListArray:
        """See :func:`normalize_lists`."""
        return normalize_lists(arr, self)


def _map_strings(arr: pa.Array | pa.ChunkedArray, fn: Callable[[str], str]) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr.cast(pa.string()))
    mapped = pa.array([fn(v) for v in enc.dictionary.to_pylist()], pa.string())
    return mapped.take(enc.indices)


def normalize_lists(arr: pa.ListArray | pa.ChunkedArray,
                    normalizer: Callable[[str], str] = normalize_drug) -> pa.ListArray:
    """Normalize every name of a ``list<string>`` column, deduplicated within each list.

    Args:
        arr: ``B`` lists of raw names (null lists stay null, null names are dropped).
        normalizer: ``str -> str``, e.g. a :class:`DrugNormalizer` or :func:`normalize_drug`.

    Returns:
        ``list<string>`` of length ``B``: mapped names in order of first occurrence, with
        duplicates and empty results (non-drugs such as ``"Vial"``) removed.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.list_(pa.string()))
    if not pa.types.is_list(arr.type):
        arr = arr.cast(pa.list_(pa.string()))
    n = len(arr)
    flat = arr.flatten()
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    enc = pc.dictionary_encode(flat.cast(pa.string()))
    mapped = [normalizer(v) for v in enc.dictionary.to_pylist()]
    uniq, inverse = np.unique(np.array(mapped + [""], dtype=object), return_inverse=True)
    empty_code = int(inverse[-1])
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    lut = np.append(inverse[:-1].astype(np.int64), -1)  # code -1 (null name) -> -1
    out_codes = lut[codes]
    keep = (out_codes >= 0) & (out_codes != empty_code)
    idx = np.flatnonzero(keep)
    key = parents[idx] * (len(uniq) + 1) + out_codes[idx]
    _, first = np.unique(key, return_index=True)
    idx = idx[np.sort(first)]
    counts = np.bincount(parents[idx], minlength=n) if n else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values = pa.array(uniq.tolist(), pa.string()).take(pa.array(out_codes[idx], pa.int64()))
    mask = pc.is_null(arr) if arr.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, mask=mask)


def base_names(raw_names: Iterable[str], salt_words: Iterable[str] = SALT_WORDS) -> list[str]:
    """Normalized names that carry no salt word: canonical targets for salt stripping.

    Adding the EMR's own salt-free names to a :class:`DrugNormalizer` lets
    ``"badazole potassium"`` fold into ``"badazole"`` when the EMR also prescribes the
    bare name, even if neither is in the interaction table.
    """
    salts = frozenset(salt_words)
    out = {normalize_drug(r) for r in raw_names if r}
    return sorted(n for n in out if n and not salts.intersection(n.split()))


def alignment_report(emr_drug_names: Iterable[str], ddi_names: Iterable[str],
                     normalizer: DrugNormalizer | None = None, top: int = 20) -> dict:
    """How many EMR drugs align to interaction drugs (the paper's "aligned drugs").

    Args:
        emr_drug_names: Raw EMR drug names, one per occurrence (repeats count towards the
            coverage of prescriptions).
        ddi_names: Drug names of the interaction table.
        normalizer: Mapping to use; default ``DrugNormalizer(ddi_names)``.
        top: How many of the most frequent unaligned names to list.

    Returns:
        ``emr_names`` (distinct raw names), ``emr_drugs`` (distinct mapped names),
        ``ddi_drugs``, ``aligned`` (distinct mapped EMR drugs that are interaction drugs),
        ``aligned_raw_names``, ``aligned_fraction`` (aligned / emr_drugs), ``occurrences``,
        ``occurrence_coverage`` (fraction of occurrences whose drug aligns) and
        ``unaligned_top`` (most frequent unaligned mapped names with counts).
    """
    ddi = {n for n in ddi_names if n}
    norm = normalizer if normalizer is not None else DrugNormalizer(sorted(ddi), prefer=ddi)
    raw_counts = Counter(n for n in emr_drug_names if n is not None)
    mapped = {raw: norm(raw) for raw in raw_counts}
    drug_counts: Counter = Counter()
    for raw, c in raw_counts.items():
        if mapped[raw]:
            drug_counts[mapped[raw]] += c
    aligned = {d for d in drug_counts if d in ddi}
    occ = sum(drug_counts.values())
    unaligned = Counter({d: c for d, c in drug_counts.items() if d not in ddi})
    return {
        "emr_names": len(raw_counts),
        "emr_drugs": len(drug_counts),
        "ddi_drugs": len(ddi),
        "aligned": len(aligned),
        "aligned_raw_names": sum(1 for raw in raw_counts if mapped[raw] in ddi),
        "aligned_fraction": len(aligned) / len(drug_counts) if drug_counts else 0.0,
        "occurrences": occ,
        "occurrence_coverage": sum(drug_counts[d] for d in aligned) / occ if occ else 0.0,
        "unaligned_top": unaligned.most_common(top),
    }
