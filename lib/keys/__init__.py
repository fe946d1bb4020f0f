"""Gateway keys: the record (``lib.keys.record``) and the store that issues, authenticates and changes them
(``lib.keys.store``)."""

from lib.keys.record import ID_LEN, KEY_PREFIX, KeyCreate, KeyPatch, KeyRecord, hash_key, is_master, parse_key_id
from lib.keys.store import KeyChanged, KeyStore

__all__ = ["ID_LEN", "KEY_PREFIX", "KeyChanged", "KeyCreate", "KeyPatch", "KeyRecord", "KeyStore", "hash_key",
           "is_master", "parse_key_id"]
