"""Parameters of the synthetic generator (:class:`SynthKnobs`) and what it planted
(:class:`SynthTruth`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpr_dist.data.synth.vocab import PAPER_ALIGNED


#: Conditions whose patients avoid antagonistic pairs whatever ``antagonism_tolerance`` is
#: (so do patients aged 65 or more).
VULNERABLE = ("kidney disease", "liver disease", "pregnancy", "infant", "heart failure")


@dataclass(frozen=True)
class SynthKnobs:
    """Probabilities of the generative process (defaults documented in docs/synthetic-data.md).

    Attributes:
        aligned_fraction: Share of the catalog in the interaction table.
        records_per_patient: Mean stays per patient.
        second_condition: Share of patients with a second condition.
        core_prob: Probability that the primary condition's first-line bundle is chosen first.
        extended_prob: Share of the individual drugs taken from the conditions' extended regimens.
        surgery_drug_prob: Probability that a surgical stay gets a surgery bundle right after
            the first-line one.
        partner_share: Share of the other individual drugs that are synergy partners of a drug
            already in the package (the rest follow a Zipf popularity).
        avoid_antagonism: Probability that an antagonistic pair is avoided (conflicting
            bundles are not combined; of a pair in a package, the weaker drug goes).
        antagonism_tolerance: Share of ``avoid_antagonism`` that doctors give up for patients
            outside the vulnerable groups (:data:`VULNERABLE`: age 65 or more, or one of the
            conditions listed there): they avoid antagonistic pairs with probability
            ``avoid_antagonism * (1 - antagonism_tolerance)``, the vulnerable ones with
            ``avoid_antagonism``. 0 (the default) treats every patient alike; higher values
            make antagonism edges common in packages, as on real data, and their avoidance
            depend on the patient.
        bundle_clash: Probability that the first-line bundles of two conditions that can
            co-occur hold an antagonistic pair (one aligned drug of each). 0 (the default)
            plants none beyond the random antagonistic pairs; with ``antagonism_tolerance``
            and ``second_core_prob`` it makes whole bundles depend on the patient: a doctor who
            avoids antagonism gives a patient with both conditions another bundle instead of
            the second first-line one.
        second_core_prob: Probability that a patient with a second condition gets that
            condition's first-line bundle right after the primary one, then its second-line
            bundle (the first shared one), before surgery bundles: the second-line bundle is
            what a doctor who skips a clashing first-line bundle gives instead. 0 (the
            default) leaves both to the weighted random order of the others.
        avoid_rule: Probability that a condition-avoided synergistic pair is broken.
        avoid_contra: Probability that a contraindicated drug is dropped.
        hard_fraction: Share of records with a random package.
        null_label_fraction: Share of interaction rows whose label is null.
        lab_signal: Probability that a condition's lab is abnormal in its direction.
        lab_noise: Probability that any lab is abnormal at random (at average severity).
        flag_fraction: Share of labs with a flag set.
        word_prob: Probability of each condition phrase in the note.
        noise_word: Probability of a phrase of a random other condition in the note.
        size_sigma: Standard deviation of the log package size per unit of severity.
        individual_share: Share of the target size left to individual drugs.
        bundle_drop: Probability that a chosen bundle is given without one of its drugs.
        severity_lab: Probability that an acuity lab is abnormal on the most severe stays.
        severity_noise: Standard deviation of the noise on the note's severity words.
    """

    aligned_fraction: float = PAPER_ALIGNED / 1428
    records_per_patient: float = 1.3
    second_condition: float = 0.4
    core_prob: float = 0.75
    extended_prob: float = 0.35
    surgery_drug_prob: float = 0.8
    partner_share: float = 0.3
    avoid_antagonism: float = 0.95
    antagonism_tolerance: float = 0.0
    bundle_clash: float = 0.0
    second_core_prob: float = 0.0
    avoid_rule: float = 0.97
    avoid_contra: float = 0.98
    hard_fraction: float = 0.03
    null_label_fraction: float = 0.05
    lab_signal: float = 0.8
    lab_noise: float = 0.08
    flag_fraction: float = 0.55
    word_prob: float = 0.65
    noise_word: float = 0.25
    size_sigma: float = 0.55
    individual_share: float = 0.2
    bundle_drop: float = 0.05
    severity_lab: float = 0.5
    severity_noise: float = 0.5


@dataclass(frozen=True, eq=False)
class SynthTruth:
    """What the generator planted (for tests, evaluation and debugging; never an input).

    Attributes:
        drug_names: ``[D]`` bare drug names; the index is the drug id.
        aligned: ``[D]`` bool, the drug is in the interaction table.
        conditions: ``[C]`` condition names.
        record_conditions: ``[R, 2]`` condition ids per EMR row, ``-1`` for none.
        package_offsets: ``[R + 1]`` offsets into ``package_drugs``.
        package_drugs: ``[N]`` drug ids of the EMR ``drugs`` lists, in the same order.
        hard: ``[R]`` bool, the package was drawn at random.
        regimens: condition -> drugs of its first-line bundle (aligned pairs labelled synergism).
        contraindications: condition -> drugs avoided for it.
        rules: ``(condition, kept drug, dropped drug)``: a synergistic pair avoided for it.
        severity: ``[R]`` float32 latent severity (standardized: mean 0, sd 1).
        bundles: ``[B]`` protocol bundles, each a tuple of drug names (disjoint).
        condition_bundles: condition -> ids into ``bundles`` it uses, first-line first.
        surgery_bundles: ids into ``bundles`` of surgical stays.
        antagonism_avoidance: ``[R]`` float, the probability that the stay's doctor avoids an
            antagonistic pair (``avoid_antagonism``, lowered by ``antagonism_tolerance`` for
            patients outside the vulnerable groups).
        antagonism: ``[P, 2]`` drug ids of the antagonistic pairs (unordered) the
            generator avoids.
        clashes: ``(condition, condition, drug, drug)``: the antagonistic pairs planted
            between two conditions' first-line bundles (``bundle_clash``).
    """

    drug_names: tuple[str, ...]
    aligned: np.ndarray
    conditions: tuple[str, ...]
    record_conditions: np.ndarray
    package_offsets: np.ndarray
    package_drugs: np.ndarray
    hard: np.ndarray
    regimens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    contraindications: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: tuple[tuple[str, str, str], ...] = ()
    severity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bundles: tuple[tuple[str, ...], ...] = ()
    condition_bundles: dict[str, tuple[int, ...]] = field(default_factory=dict)
    surgery_bundles: tuple[int, ...] = ()
    antagonism_avoidance: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    antagonism: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    clashes: tuple[tuple[str, str, str, str], ...] = ()
