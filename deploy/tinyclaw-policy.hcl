# The control plane's Vault/OpenBao policy: its own KV subtree and its Transit key only.
path "secret/data/tinyclaw/*"     { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/tinyclaw/*" { capabilities = ["read", "delete", "list"] }
path "transit/encrypt/tinyclaw"   { capabilities = ["update"] }
path "transit/decrypt/tinyclaw"   { capabilities = ["update"] }
