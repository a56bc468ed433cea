"""The CLI's commands that read and act on a cluster (``get``, ``describe``, ``watch``, ``version``).

``cli.py`` is the entry point and holds the operator's own commands; what a command says when
the cluster cannot be used lives in :mod:`.connect`, shared by all of them.
"""
