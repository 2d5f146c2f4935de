"""The datasets a notebook can train on: one row per dataset, the only place their facts live.

A row gives the Kaggle slug (``kernel-metadata.json``'s ``dataset_sources``), the four wav
folder names that ``templates.data.find_dataset`` looks for (at any depth, possibly nested one
level in a folder of the same name, or as ``<folder>.7z``), the files' native sample rate
(training reads them resampled to ``RunConfig.sample_rate``, 16 kHz), the size of the standard
test set when there is one, and published test-set figures to set a run's numbers against.
No heavy imports: the builders read this table too.
"""

from dataclasses import dataclass, field

# Layout fields, in the order DatasetLayout lists them.
DATASET_FIELDS = ("train_noisy", "train_clean", "test_noisy", "test_clean")


@dataclass(frozen=True)
class DatasetSource:
    """One dataset: where it is on Kaggle and what its folders are called.

    ``published``: ``{system: {"pesq": value, "source": where it is published}}`` on the full
    standard test set (``test_pairs`` files), wide-band PESQ at 16 kHz.
    """

    name: str
    slug: str
    folders: dict
    sample_rate: int
    test_pairs: int | None = None
    published: dict = field(default_factory=dict)
    found_at: str = ""  # where the slug was found (for people checking it)

    def __post_init__(self) -> None:
        if tuple(self.folders) != DATASET_FIELDS:
            raise ValueError(f"dataset {self.name!r}: folders must give {DATASET_FIELDS} in that "
                             f"order, got {tuple(self.folders)}")


_GTCRN_README = ("Rong et al., GTCRN (ICASSP 2024), Table 1 'Performance on VCTK-DEMAND test "
                 "set', github.com/Xiaobin-Rong/gtcrn README")

DATASETS = {
    "libri": DatasetSource(
        name="libri",
        slug="earth16/libri-speech-noise-dataset",
        folders={"train_noisy": "train", "train_clean": "y_train", "test_noisy": "test",
                 "test_clean": "y_test"},
        sample_rate=16000,
    ),
    # VoiceBank+DEMAND (Valentini-Botinhao et al. 2016, datashare.ed.ac.uk/handle/10283/2791),
    # 28-speaker training set (11,572 pairs) and the standard 824-pair test set, 48 kHz. The
    # Kaggle copy unpacks each folder into a folder of the same name.
    "vbdemand": DatasetSource(
        name="vbdemand",
        slug="sayuksh/denoising-audio-collection",
        folders={"train_noisy": "noisy_trainset_28spk_wav",
                 "train_clean": "clean_trainset_28spk_wav",
                 "test_noisy": "noisy_testset_wav", "test_clean": "clean_testset_wav"},
        sample_rate=48000,
        test_pairs=824,
        published={
            "noisy": {"pesq": 1.97, "source": _GTCRN_README},
            "RNNoise": {"pesq": 2.29, "source": _GTCRN_README},
            "GTCRN": {"pesq": 2.87, "source": _GTCRN_README},
        },
        found_at=("github.com/grgevansdwy/speechDenoiserToWav Dataset_Preparation.ipynb: "
                  "kagglehub.dataset_download('sayuksh/denoising-audio-collection') lists these "
                  "folders, 11,572 training and 824 test pairs"),
    ),
}
DEFAULT_DATASET = "libri"


def dataset_source(name: str) -> DatasetSource:
    """The row for ``name``; a ``ValueError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known datasets: "
                         f"{', '.join(sorted(DATASETS))}") from None


def published_comparison(name: str, measured: dict, n_test: int, eval_mode: str) -> dict:
    """The summary's ``dataset`` block: the row's facts, its published figures and whether this
    run's numbers can sit next to them (every file of the standard test set, whole files).

    ``measured``: ``{"noisy": {"pesq": ...}, "enhanced": {"pesq": ...}}`` of this run.
    """
    src = dataset_source(name)
    comparable = bool(src.published) and src.test_pairs == n_test and eval_mode == "full"
    if not src.published:
        note = "no published figures for this dataset"
    elif comparable:
        note = f"scored the standard {src.test_pairs}-file test set on whole files"
    else:
        note = (f"not comparable with the published figures: scored {n_test} of the standard "
                f"{src.test_pairs} test files with eval_mode {eval_mode!r} (need all, 'full')")
    rows = [{"system": system, "pesq": fig["pesq"], "source": fig["source"]}
            for system, fig in src.published.items()]
    rows += [{"system": f"this run ({part})", "pesq": measured.get(part, {}).get("pesq"),
              "source": "this run"} for part in ("noisy", "enhanced")] if src.published else []
    return {"name": src.name, "slug": src.slug, "native_sample_rate": src.sample_rate,
            "test_pairs_standard": src.test_pairs, "test_pairs_scored": n_test,
            "comparable": comparable, "note": note, "pesq_table": rows}


def format_published_comparison(block: dict) -> str:
    """Lines for the notebook's output: the published PESQ figures next to this run's."""
    if not block["pesq_table"]:
        return f"dataset {block['name']}: {block['note']}"
    lines = [f"PESQ-wb on {block['name']} ({block['note']}):"]
    for row in block["pesq_table"]:
        value = "n/a" if row["pesq"] is None else f"{row['pesq']:.2f}"
        lines.append(f"  {row['system']:<20} {value:>5}   {row['source']}")
    return "\n".join(lines)
