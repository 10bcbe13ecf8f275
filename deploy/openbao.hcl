# OpenBao (Vault API) for TinyClaw Cloud secrets: KV v2 at secret/, Transit at transit/.
# After the first start: `bao operator init`, unseal, then
#   bao secrets enable -path=secret kv-v2 && bao secrets enable transit
#   bao write -f transit/keys/tinyclaw
# and give the control plane a token with deploy/tinyclaw-policy.hcl.
storage "file" {
  path = "/openbao/data"
}
listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true  # terminate TLS at your load balancer, or configure tls_cert_file here
}
ui = false
disable_mlock = false
