"""Running xm_rules' tools: as Bazel persistent workers when the strategy allows."""

# Bazel's default strategies put `worker` before `sandboxed`: each tool then starts once per
# build server and serves actions over stdin (JSON protocol), instead of one Python start-up and
# one sandbox per action. `--strategy=<Mnemonic>=sandboxed` turns it off.
_WORKER = {
    "supports-workers": "1",
    "requires-worker-protocol": "json",
}

def run_tool(ctx, executable, args, **kwargs):
    """ctx.actions.run of a tool, with its arguments in a params file as workers need.

    Args:
      ctx: the rule context.
      executable: the tool (a py_binary built for the exec configuration).
      args: an Args object: all of the tool's arguments.
      **kwargs: inputs, outputs, mnemonic, progress_message.
    """
    args.use_param_file("@%s", use_always = True)
    args.set_param_file_format("multiline")
    ctx.actions.run(
        executable = executable,
        arguments = [args],
        execution_requirements = _WORKER,
        **kwargs
    )
