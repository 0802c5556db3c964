"""The lab: suites, peers, ablations, reports and plots behind `codeswift bench`.

The product (the command line's other subcommands, the server, the engine) never imports this
package; `codeswift bench` and `generate --method` with a lab method (a peer or an ablation) do.
"""

__all__: list[str] = []
