# Multi-stage: a static, stripped binary on distroless, running as non-root.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/agentpdp ./cmd/agentpdp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agentpdp /usr/local/bin/agentpdp
USER nonroot:nonroot
WORKDIR /home/nonroot
# ext_authz gRPC, admin (/metrics, /healthz, /readyz), the MCP door, the
# reviewers' approvals API and page.
EXPOSE 9191 9090 9595 9494
ENTRYPOINT ["/usr/local/bin/agentpdp"]
# Sidecars share the pod's loopback; set AGENTPDP_ENVOY_ADDR=0.0.0.0:9191
# (and AGENTPDP_ADMIN_ADDR, AGENTPDP_MCP_ADDR, AGENTPDP_APPROVALS_ADDR) to
# serve other pods.
CMD ["run"]
