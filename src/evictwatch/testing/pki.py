"""The harness's certificates: the product's own :mod:`evictwatch.pki`, re-exported.

The operator's ``--self-signed`` mode needs the same small CA as the control plane, and
product code never imports the harness, so the code lives in the product and the harness
keeps its old import path for tests and users' tests.
"""

from ..pki import KeyPair, issue, make_ca, make_rsa_key_pair

__all__ = ["KeyPair", "issue", "make_ca", "make_rsa_key_pair"]
