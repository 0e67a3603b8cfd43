"""Every dataset paperzoo knows, for ``paperzoo data`` and the loaders."""
from __future__ import annotations

from paperzoo.data.roots import DatasetSource

_KG_FILES = ("train.txt", "valid.txt", "test.txt")
_CONVE_URL = "https://github.com/TimDettmers/ConvE (the <name>.tar.gz archives)"


def _kg(name: str, folder: str, description: str, pykeen: str | None = None) -> DatasetSource:
    return DatasetSource(
        name=name, relpaths=(f"kg/{folder}", folder), files=_KG_FILES, description=description,
        packages=(("pykeen", f"datasets/{pykeen}"),) if pykeen else (), url=_CONVE_URL,
    )


DATASETS: dict[str, DatasetSource] = {s.name: s for s in [
    _kg("fb15k237", "FB15k-237", "Freebase subset without inverse leakage (Toutanova & Chen 2015)"),
    _kg("wn18rr", "WN18RR", "WordNet subset without inverse leakage (Dettmers et al. 2018)"),
    _kg("umls", "umls", "Unified Medical Language System, 135 entities / 46 relations", pykeen="umls"),
    _kg("kinship", "kinship", "Alyawarra kinship, 104 entities / 25 relations", pykeen="kinships"),
    _kg("nations", "nations", "Nations, 14 entities / 55 relations", pykeen="nations"),
    _kg("countries_s1", "countries_S1", "Countries S1 (Bouchard et al. 2015)"),
    _kg("countries_s2", "countries_S2", "Countries S2"),
    _kg("countries_s3", "countries_S3", "Countries S3"),
]}

# Heterogeneous graphs (HGT); loaders in paperzoo.data.hetero.
AMINER_FILES = ("p_a_list_train.txt", "p_a_list_test.txt", "p_p_cite_list_train.txt",
                "p_p_cite_list_test.txt", "p_v.txt", "p_time.txt", "a_class_train.txt", "a_class_test.txt")
DATASETS.update({s.name: s for s in [
    DatasetSource(
        name="acm", relpaths=("hetero/acm", "acm"), files=("edge.txt", "label.txt"),
        description="ACM heterogeneous graph: 4,019 papers, 7,167 authors, 60 subjects, 3 paper classes",
        url="https://github.com/BUPT-GAMMA/OpenHINE (dataset/acm)"),
    DatasetSource(
        name="aminer", relpaths=("hetero/aminer", "aminer"), files=AMINER_FILES,
        description="AMiner CS graph (HetGNN): 21,044 papers 2006-2015, 28,646 authors, 18 venues, "
                    "4 author classes",
        url="https://github.com/chuxuzhang/KDD2019_HetGNN (data/academic)"),
    DatasetSource(
        name="imdb", relpaths=("hetero/imdb", "imdb"), files=("movie_metadata.csv",),
        description="IMDB 5000 movies with directors, actors, plot keywords, years; "
                    "Action/Comedy/Drama movie classes (MAGNN rule)",
        url="https://www.kaggle.com/datasets/carolzhangdc/imdb-5000-movie-dataset"),
]})


def get(name: str) -> DatasetSource:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
