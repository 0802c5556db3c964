-- codeswift: Neovim client for the codeswift local code-completion language server.
--
-- The server (`codeswift serve`) speaks LSP over stdio and answers the LSP 3.18 request
-- `textDocument/inlineCompletion`. Neovim 0.12 renders inline completions itself
-- (`vim.lsp.inline_completion`); Neovim 0.11 has no such module, so this file carries a small
-- implementation of its own: debounced requests while typing, ghost text drawn with extmarks,
-- and <Tab> to accept. See editors/nvim/README.md.

local M = {}

local api = vim.api
local uv = vim.uv or vim.loop

local NAME = "codeswift"
local METHOD = "textDocument/inlineCompletion"
local CURSOR_METHOD = "codeswift/cursor"
local TRIGGER_AUTOMATIC = 2
-- RequestCancelled, ContentModified, ServerCancelled: the normal fate of a stale request.
local CANCELLED = { [-32800] = true, [-32801] = true, [-32802] = true }

M.defaults = {
  -- The server command; a list as for vim.lsp.start().
  cmd = { "codeswift", "serve" },
  -- Working directory and extra environment of the server process (nil: inherit Neovim's).
  cmd_cwd = nil,
  cmd_env = nil,
  filetypes = { "python", "lua", "javascript", "typescript", "go", "rust", "c", "cpp", "java" },
  -- The first of these found upward from the file is the workspace root (else the file's folder).
  root_markers = {
    ".git",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "package.json",
    "Cargo.toml",
    "go.mod",
    "pom.xml",
    "build.gradle",
    ".hg",
  },
  -- Quiet time after the last keystroke before asking (Neovim 0.11 only; 0.12's native module
  -- has its own fixed delay).
  debounce_ms = 75,
  -- Sent as LSP initializationOptions, camelCase as the server expects, e.g.
  -- { maxNewTokens = 48, debounceMs = 50, multiline = "auto" }.
  init_options = {},
  -- Tell the server where the cursor rests (`codeswift/cursor`) this long after the last move
  -- or buffer switch, so it prefills that place's prompt before you type; false: never.
  rest_ms = 250,
  -- Insert-mode key that accepts the shown completion; false leaves keys alone (then map
  -- require("codeswift").accept yourself).
  accept_key = "<Tab>",
  -- nil: use vim.lsp.inline_completion when Neovim has it (0.12+); false: always use the
  -- built-in 0.11 implementation; true: insist on the native one.
  native = nil,
}

M.config = vim.deepcopy(M.defaults)

local ns = api.nvim_create_namespace("codeswift_ghost")
local augroup = nil ---@type integer?
local warned = {} ---@type table<string, true>
-- Per-buffer state of the 0.11 implementation:
-- { timer, seq, inflight = {[request_id] = client_id}, req_row, req_col, req_tick,
--   ghost = {item, text, ...}, fallback = <the accept key's mapping before ours> }
local bufstate = {} ---@type table<integer, table>

local function warn_once(key, msg)
  if warned[key] then
    return
  end
  warned[key] = true
  vim.notify("codeswift: " .. msg, vim.log.levels.WARN)
end

local function use_native()
  if M.config.native ~= nil then
    return M.config.native and vim.lsp.inline_completion ~= nil
  end
  return vim.fn.has("nvim-0.12") == 1 and vim.lsp.inline_completion ~= nil
end

local function get_client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = NAME })[1]
end

---------------------------------------------------------------------------------------------
-- Status
---------------------------------------------------------------------------------------------

local last_status = nil ---@type table?

--- One short line for statuslines, e.g. "codeswift ready 312ms".
local function format_status(s)
  if type(s) ~= "table" then
    return "codeswift"
  end
  local text = "codeswift " .. tostring(s.state or "?")
  if type(s.lastLatencyMs) == "number" and (s.state == "ready" or s.state == "busy") then
    text = text .. (" %dms"):format(s.lastLatencyMs)
  end
  return text
end

local function set_status(params)
  last_status = params
  vim.g.codeswift_status = format_status(params)
  vim.g.codeswift_status_data = params
  -- Lets statusline plugins refresh on change: autocmd User CodeswiftStatus ...
  pcall(api.nvim_exec_autocmds, "User", { pattern = "CodeswiftStatus", modeline = false })
end

--- Handler of the server's `codeswift/status` notification.
local function on_status(_, params)
  if type(params) ~= "table" then
    return
  end
  set_status(params)
  if params.state == "error" then
    -- One warning per distinct message: a broken model should be visible, but not nag.
    local msg = tostring(params.message or "the server reported an error")
    warn_once("status:" .. msg, msg)
  end
end

--- The statusline text; same as vim.g.codeswift_status.
function M.statusline()
  return vim.g.codeswift_status or ""
end

function M.status()
  return last_status
end

---------------------------------------------------------------------------------------------
-- Ghost text (Neovim 0.11 implementation)
---------------------------------------------------------------------------------------------

--- Byte column of an LSP character offset on `line` in the client's position encoding.
local function byte_col(line, character, encoding)
  local ok, col = pcall(vim.str_byteindex, line, encoding or "utf-16", character, false)
  if ok and type(col) == "number" then
    return col
  end
  return math.min(character, #line)
end

--- Virtual text does not expand tabs itself; expand them as the buffer would.
local function expand_tabs(s, start_vcol)
  if not s:find("\t", 1, true) then
    return s
  end
  local ts = vim.bo.tabstop > 0 and vim.bo.tabstop or 8
  local out, vcol = {}, start_vcol or 0
  for ch in s:gmatch(".") do
    if ch == "\t" then
      local n = ts - (vcol % ts)
      out[#out + 1] = string.rep(" ", n)
      vcol = vcol + n
    else
      out[#out + 1] = ch
      vcol = vcol + 1
    end
  end
  return table.concat(out)
end

--- insertText may be a plain string or a StringValue {kind = "snippet", value}.
local function item_text(item)
  local t = item.insertText
  if type(t) == "table" and type(t.value) == "string" then
    return t.value, t.kind == "snippet"
  end
  if type(t) == "string" then
    return t, false
  end
  return nil, false
end

--- What a snippet looks like once expanded, for display only.
local function snippet_display(text)
  local ok, grammar = pcall(require, "vim.lsp._snippet_grammar")
  if ok then
    local ok2, parsed = pcall(grammar.parse, text)
    if ok2 then
      return tostring(parsed)
    end
  end
  return text
end

local function clear_ghost(bufnr)
  local st = bufstate[bufnr]
  if st then
    st.ghost = nil
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
end

--- Forget the pending request for the buffer: bumping `seq` makes a reply or a timer callback
--- that is already queued recognise itself as stale, and requests already sent are cancelled
--- ($/cancelRequest).
---
--- Cancelling matters for speed, not just tidiness: a stale request left waiting keeps its
--- generation alive in the server and can queue another one ahead of the request that counts.
--- Measured here, typing 150 ms per key, keeping them took 6.7 s to never (30 s) for the next
--- ghost; cancelling took 0.2-2.4 s.
local function cancel(bufnr)
  local st = bufstate[bufnr]
  if not st then
    return
  end
  st.seq = st.seq + 1
  if st.timer then
    st.timer:stop()
  end
  for request_id, client_id in pairs(st.inflight) do
    local client = vim.lsp.get_client_by_id(client_id)
    -- Only what is still pending: a request the server already cancelled itself (answered
    -- -32800) never reaches our handler, so it may linger in `inflight`.
    local pending = client and client.requests[request_id]
    if pending and pending.type == "pending" and not client:is_stopped() then
      pcall(client.cancel_request, client, request_id)
    end
  end
  st.inflight = {}
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == "i"
end

--- Whether the ghost still belongs to the buffer's current text and cursor.
local function ghost_valid(bufnr, g)
  if not g or api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
    return false
  end
  local cur = api.nvim_win_get_cursor(0)
  return g.tick == api.nvim_buf_get_changedtick(bufnr) and cur[1] - 1 == g.row and cur[2] == g.col
end

--- Turns an item into a ghost anchored at the cursor, or nil when it cannot be shown: its
--- range is not on the cursor line, or the text it would replace before the cursor is not a
--- prefix of its insertText (what the user already typed must not be retyped on screen).
local function make_ghost(bufnr, item, client, row, col)
  local text, snippet = item_text(item)
  if not text or text == "" then
    return nil
  end
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  local start_col, end_col = col, col
  local range = item.range
  if type(range) == "table" and range.start and range["end"] then
    if range.start.line ~= row or range["end"].line ~= row then
      return nil
    end
    start_col = byte_col(line, range.start.character, client.offset_encoding)
    end_col = byte_col(line, range["end"].character, client.offset_encoding)
    if start_col > col or end_col < col then
      return nil
    end
  end
  local shown = snippet and snippet_display(text) or text
  local typed = line:sub(start_col + 1, col)
  if shown:sub(1, #typed) ~= typed then
    return nil
  end
  local rest = shown:sub(#typed + 1)
  if rest == "" then
    return nil
  end
  return {
    item = item,
    text = text,
    snippet = snippet,
    rest = rest,
    -- Text after the cursor that the item replaces (e.g. a closing bracket).
    replaced_tail = line:sub(col + 1, end_col),
    line = line,
    row = row,
    col = col,
    start_col = start_col,
    end_col = end_col,
    tick = api.nvim_buf_get_changedtick(bufnr),
    client_id = client.id,
  }
end

local function render_ghost(bufnr, g)
  local lines = vim.split(g.rest, "\n", { plain = true })
  local first = lines[1]
  -- A one-line item that rewrites the text after the cursor ("foo|)" -> "foo(x)"): draw only
  -- the part before that tail, which stays on screen and reads as the end of the completion.
  if #lines == 1 and g.replaced_tail ~= "" and vim.endswith(first, g.replaced_tail) then
    first = first:sub(1, #first - #g.replaced_tail)
  end
  local hl = "CodeswiftGhost"
  local opts = { hl_mode = "combine", right_gravity = false }
  if first ~= "" then
    local vcol = vim.fn.strdisplaywidth(g.line:sub(1, g.col))
    opts.virt_text = { { expand_tabs(first, vcol), hl } }
    opts.virt_text_pos = "inline"
  end
  if #lines > 1 then
    local virt_lines = {}
    for i = 2, #lines do
      virt_lines[#virt_lines + 1] = { { expand_tabs(lines[i], 0), hl } }
    end
    opts.virt_lines = virt_lines
  end
  if not opts.virt_text and not opts.virt_lines then
    return false
  end
  local ok = pcall(api.nvim_buf_set_extmark, bufnr, ns, g.row, g.col, opts)
  return ok
end

local function on_result(bufnr, token, client, request, err, result)
  local st = bufstate[bufnr]
  if st and request.id then
    st.inflight[request.id] = nil
  end
  if not st or st.seq ~= token then
    return -- stale: the user typed or moved since
  end
  if err then
    if not CANCELLED[err.code] then
      vim.lsp.log.warn("codeswift: inlineCompletion failed", err)
      warn_once("request-error", "completion request failed: " .. tostring(err.message or err.code))
    end
    return
  end
  if type(result) ~= "table" or api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
    return
  end
  if vim.fn.pumvisible() == 1 then
    return
  end
  local cursor = api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local tick = api.nvim_buf_get_changedtick(bufnr)
  if row ~= st.req_row or col ~= st.req_col or tick ~= st.req_tick then
    return
  end
  local items = result.items or result
  if type(items) ~= "table" then
    return
  end
  for _, item in ipairs(items) do
    local g = type(item) == "table" and make_ghost(bufnr, item, client, row, col)
    if g then
      clear_ghost(bufnr)
      if render_ghost(bufnr, g) then
        st.ghost = g
      end
      return
    end
  end
end

local function request(bufnr, token)
  local st = bufstate[bufnr]
  if not st or st.seq ~= token then
    return
  end
  if api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() or vim.fn.pumvisible() == 1 then
    return
  end
  local client = get_client(bufnr)
  if not client or client:is_stopped() then
    return
  end
  local win = api.nvim_get_current_win()
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  params.context = { triggerKind = TRIGGER_AUTOMATIC }
  -- Not in the 3.18 params, but the server reads it to indent multi-line completions.
  params.formattingOptions = {
    tabSize = vim.lsp.util.get_effective_tabstop(bufnr),
    insertSpaces = vim.bo[bufnr].expandtab,
  }
  local cursor = api.nvim_win_get_cursor(win)
  st.req_row, st.req_col = cursor[1] - 1, cursor[2]
  st.req_tick = api.nvim_buf_get_changedtick(bufnr)
  local request = {}
  -- client:request() first flushes pending didChange notifications, so the server sees the
  -- text we see.
  local ok, ok_req, request_id = pcall(client.request, client, METHOD, params, function(err, result)
    on_result(bufnr, token, client, request, err, result)
  end, bufnr)
  if ok and ok_req and request_id then
    request.id = request_id
    st.inflight[request_id] = client.id
  end
end

--- Typing, moving or entering insert mode: drop the old ghost and request, ask again after a
--- pause. (Typing into a shown completion is answered from the server's cache at once.)
local function schedule_request(bufnr)
  local st = bufstate[bufnr]
  if not st then
    return
  end
  cancel(bufnr)
  clear_ghost(bufnr)
  local token = st.seq
  st.timer:start(
    M.config.debounce_ms,
    0,
    vim.schedule_wrap(function()
      request(bufnr, token)
    end)
  )
end

---------------------------------------------------------------------------------------------
-- Accepting
---------------------------------------------------------------------------------------------

--- Tells the server the completion was taken (runs the item's `codeswift.accept` command).
local function run_command(client_id, command, bufnr)
  if type(command) ~= "table" or not command.command then
    return
  end
  local client = vim.lsp.get_client_by_id(client_id)
  if not client or client:is_stopped() then
    return
  end
  pcall(client.exec_cmd, client, command, { bufnr = bufnr }, function(err)
    if err and not CANCELLED[err.code] then
      vim.lsp.log.warn("codeswift: " .. tostring(command.command) .. " failed", err)
    end
  end)
end

--- Whether a completion is shown in the buffer and <Tab> would take it.
function M.has_suggestion(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local st = bufstate[bufnr]
  return st ~= nil and ghost_valid(bufnr, st.ghost)
end

--- Inserts the shown completion as real text. Returns false when there is none.
--- Must not run under textlock (an <expr> mapping): the accept key returns a <Cmd> for it.
--- On Neovim 0.12 this defers to vim.lsp.inline_completion.get().
function M.accept(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if use_native() then
    return vim.lsp.inline_completion.get({ bufnr = bufnr })
  end
  local st = bufstate[bufnr]
  local g = st and st.ghost
  if not g or not ghost_valid(bufnr, g) then
    return false
  end
  cancel(bufnr)
  clear_ghost(bufnr)
  if g.snippet then
    api.nvim_buf_set_text(bufnr, g.row, g.start_col, g.row, g.end_col, { "" })
    api.nvim_win_set_cursor(0, { g.row + 1, g.start_col })
    vim.snippet.expand(g.text)
  else
    -- The text replaces item.range (or is inserted at the cursor); the cursor goes to its end.
    local lines = vim.split(g.text, "\n", { plain = true })
    api.nvim_buf_set_text(bufnr, g.row, g.start_col, g.row, g.end_col, lines)
    local last = lines[#lines]
    local col = (#lines == 1 and g.start_col or 0) + #last
    api.nvim_win_set_cursor(0, { g.row + #lines, col })
  end
  run_command(g.client_id, g.item.command, bufnr)
  return true
end

--- Dismisses the shown completion (0.11 implementation) without inserting it.
function M.dismiss(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  cancel(bufnr)
  clear_ghost(bufnr)
end

---------------------------------------------------------------------------------------------
-- Accept key with fallback to whatever the key did before
---------------------------------------------------------------------------------------------

local function termcodes(keys)
  return api.nvim_replace_termcodes(keys, true, true, true)
end

--- Keys the accept key produces when there is nothing to accept: the mapping it had before
--- (e.g. a completion menu or snippet plugin's <Tab>), else the key itself.
local function fallback(orig, lhs)
  if type(orig) ~= "table" or vim.tbl_isempty(orig) then
    return termcodes(lhs)
  end
  if orig.callback then
    local ok, res = pcall(orig.callback)
    if orig.expr == 1 and ok and type(res) == "string" then
      return orig.replace_keycodes == 1 and termcodes(res) or res
    end
    return ""
  end
  local rhs = orig.rhs or ""
  if orig.expr == 1 then
    local ok, res = pcall(api.nvim_eval, rhs)
    rhs = ok and tostring(res) or ""
  else
    rhs = termcodes(rhs)
  end
  if orig.noremap == 0 then
    -- Our mapping is noremap; feed a remappable rhs (e.g. <Plug>(...)) so it still maps.
    api.nvim_feedkeys(rhs, "im", false)
    return ""
  end
  return rhs
end

local function map_accept_key(bufnr)
  local lhs = M.config.accept_key
  if not lhs or lhs == "" then
    return
  end
  local st = bufstate[bufnr] or {}
  bufstate[bufnr] = st
  local existing = vim.fn.maparg(lhs, "i", false, true)
  if existing.desc ~= "codeswift: accept completion" then
    st.fallback = existing
  end
  local accept_cmd = termcodes("<Cmd>lua require('codeswift').accept()<CR>")
  vim.keymap.set("i", lhs, function()
    if use_native() then
      -- get() schedules the insertion itself, so it is allowed in an <expr> mapping.
      if vim.lsp.inline_completion.get({ bufnr = bufnr }) then
        return ""
      end
    elseif M.has_suggestion(bufnr) then
      -- An <expr> mapping may not change the buffer; a <Cmd> runs right after, in order with
      -- any keys typed later.
      return accept_cmd
    end
    return fallback(st.fallback, lhs)
  end, {
    buffer = bufnr,
    expr = true,
    replace_keycodes = false,
    desc = "codeswift: accept completion",
  })
end

local function unmap_accept_key(bufnr, st)
  local lhs = M.config.accept_key
  if not lhs or lhs == "" or not api.nvim_buf_is_valid(bufnr) then
    return
  end
  pcall(vim.keymap.del, "i", lhs, { buffer = bufnr })
  if st and type(st.fallback) == "table" and st.fallback.buffer == 1 then
    pcall(vim.fn.mapset, "i", false, st.fallback)
  end
end

---------------------------------------------------------------------------------------------
-- Attaching to buffers
---------------------------------------------------------------------------------------------

local function detach(bufnr)
  local st = bufstate[bufnr]
  if not st then
    return
  end
  cancel(bufnr)
  clear_ghost(bufnr)
  for _, timer in pairs({ st.timer, st.rest_timer }) do -- either may be nil
    if not timer:is_closing() then
      timer:close()
    end
  end
  if augroup and api.nvim_buf_is_valid(bufnr) then
    api.nvim_clear_autocmds({ group = augroup, buffer = bufnr })
  end
  unmap_accept_key(bufnr, st)
  bufstate[bufnr] = nil
end

--- The cursor rested in `bufnr`: the server warms that place (prefills its prompt).
local function cursor_rests(bufnr)
  local client = get_client(bufnr)
  if not client or client:is_stopped() or api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local mode = api.nvim_get_mode().mode
  if mode:sub(1, 1) ~= "n" and mode:sub(1, 1) ~= "i" then
    return -- a selection, a command line: not a place to complete at
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  pcall(client.notify, client, CURSOR_METHOD, params)
end

local function watch_cursor(bufnr, st)
  if not M.config.rest_ms then
    return
  end
  st.rest_timer = uv.new_timer()
  local function rest_later()
    st.rest_timer:start(
      M.config.rest_ms,
      0,
      vim.schedule_wrap(function()
        cursor_rests(bufnr)
      end)
    )
  end
  api.nvim_create_autocmd({ "BufEnter", "CursorMoved", "CursorMovedI" }, {
    group = augroup,
    buffer = bufnr,
    callback = rest_later,
  })
  if api.nvim_get_current_buf() == bufnr then
    rest_later()
  end
end

local function attach(bufnr, client)
  if bufstate[bufnr] and bufstate[bufnr].attached then
    return
  end
  bufstate[bufnr] = bufstate[bufnr] or {}
  local st = bufstate[bufnr]
  st.attached, st.seq, st.inflight = true, 0, {}
  map_accept_key(bufnr)
  watch_cursor(bufnr, st)
  if use_native() then
    if not pcall(vim.lsp.inline_completion.enable, true, { bufnr = bufnr }) then
      pcall(vim.lsp.inline_completion.enable, true)
    end
    return
  end
  st.timer = uv.new_timer()
  api.nvim_create_autocmd({ "InsertEnter", "TextChangedI", "CursorMovedI" }, {
    group = augroup,
    buffer = bufnr,
    callback = function()
      schedule_request(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave", "WinLeave" }, {
    group = augroup,
    buffer = bufnr,
    callback = function()
      cancel(bufnr)
      clear_ghost(bufnr)
    end,
  })
  api.nvim_create_autocmd("BufWipeout", {
    group = augroup,
    buffer = bufnr,
    callback = function()
      detach(bufnr)
    end,
  })
  -- The server attaches a moment after the file opens; someone already typing should not have
  -- to type again to be asked for.
  if api.nvim_get_current_buf() == bufnr and in_insert_mode() then
    schedule_request(bufnr)
  end
end

local function root_dir(bufnr)
  local root = vim.fs.root(bufnr, M.config.root_markers)
  if root then
    return root
  end
  return vim.fs.dirname(api.nvim_buf_get_name(bufnr))
end

--- Starts (or reuses, per workspace root) the server and attaches it to the buffer.
function M.start(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if not api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= "" then
    return nil
  end
  if api.nvim_buf_get_name(bufnr) == "" then
    return nil
  end
  local cmd = M.config.cmd
  if type(cmd) == "table" and vim.fn.executable(cmd[1]) ~= 1 then
    -- vim.lsp.start would print an error per buffer; one warning is enough.
    local msg = ("server command %q is not executable, completions are off"):format(
      tostring(cmd[1])
    ) .. " (see setup{cmd=...})"
    set_status({ state = "error", message = msg })
    warn_once("cmd", msg)
    return nil
  end
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  if not use_native() then
    -- 0.11 does not advertise inline completion itself, but with this plugin it does handle it.
    capabilities.textDocument = capabilities.textDocument or {}
    capabilities.textDocument.inlineCompletion = { dynamicRegistration = false }
  end
  if not last_status then
    set_status({ state = "starting" })
  end
  local ok, client_id = pcall(vim.lsp.start, {
    name = NAME,
    cmd = cmd,
    cmd_cwd = M.config.cmd_cwd,
    cmd_env = M.config.cmd_env,
    root_dir = root_dir(bufnr),
    -- An empty Lua table would be sent as a JSON array, which the server rejects.
    init_options = not vim.tbl_isempty(M.config.init_options or {}) and M.config.init_options
      or nil,
    capabilities = capabilities,
    handlers = { ["codeswift/status"] = on_status },
    on_exit = function(code, signal)
      -- Neovim itself warns when a server dies (non-zero exit); here we only tidy up.
      vim.schedule(function()
        set_status({
          state = "stopped",
          message = ("server exited (code %s, signal %s)"):format(code, signal),
        })
        for b in pairs(bufstate) do
          cancel(b)
          clear_ghost(b)
        end
      end)
    end,
  }, { bufnr = bufnr })
  if not ok then
    warn_once("start", "could not start the server: " .. tostring(client_id))
    return nil
  end
  return client_id
end

---------------------------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------------------------

local function any_client()
  return get_client(0) or vim.lsp.get_clients({ name = NAME })[1]
end

local function execute(command, on_done)
  local client = any_client()
  if not client then
    vim.notify("codeswift: the server is not running", vim.log.levels.WARN)
    return
  end
  local params = { command = command, arguments = {} }
  client:request("workspace/executeCommand", params, function(err, result)
    if err then
      if not CANCELLED[err.code] then
        local msg = ("codeswift: %s failed: %s"):format(command, tostring(err.message))
        vim.notify(msg, vim.log.levels.WARN)
      end
      return
    end
    on_done(result)
  end, api.nvim_get_current_buf())
end

--- :CodeswiftToggle: turn completions off or on in the server.
function M.toggle()
  for b in pairs(bufstate) do
    cancel(b)
    clear_ghost(b)
  end
  execute("codeswift.toggle", function(result)
    local text = "toggled"
    if type(result) == "table" and result.enabled ~= nil then
      text = result.enabled and "on" or "off"
    elseif type(result) == "boolean" then
      text = result and "on" or "off"
    end
    vim.notify("codeswift: completions " .. text, vim.log.levels.INFO)
  end)
end

--- :CodeswiftStats: the server's counters.
function M.stats()
  execute("codeswift.stats", function(result)
    api.nvim_echo({ { "codeswift stats: " .. vim.inspect(result) } }, true, {})
  end)
end

--- :CodeswiftStatus: the last `codeswift/status` the server sent, and the client.
function M.show_status()
  local client = any_client()
  local where = "not running"
  if client then
    where = ("client %d, root %s"):format(client.id, tostring(client.root_dir))
  end
  local how = use_native() and "vim.lsp.inline_completion (native)" or "codeswift ghost text (0.11)"
  local lines = {
    "codeswift: " .. where,
    "implementation: " .. how,
    "status: " .. vim.inspect(last_status),
  }
  api.nvim_echo({ { table.concat(lines, "\n") } }, true, {})
end

function M.define_commands()
  local commands = {
    CodeswiftStatus = { M.show_status, "codeswift: show the server's last status" },
    CodeswiftToggle = { M.toggle, "codeswift: turn completions off or on" },
    CodeswiftStats = { M.stats, "codeswift: show the server's statistics" },
  }
  for name, spec in pairs(commands) do
    api.nvim_create_user_command(name, function()
      spec[1]()
    end, { desc = spec[2] })
  end
end

---------------------------------------------------------------------------------------------
-- Setup
---------------------------------------------------------------------------------------------

function M.setup(opts)
  if vim.fn.has("nvim-0.11") ~= 1 then
    warn_once("version", "needs Neovim 0.11 or newer")
    return
  end
  -- Calling setup() again starts over: forget the previous buffers' state first.
  for b in pairs(bufstate) do
    detach(b)
  end
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  -- Lists replace the defaults instead of merging index by index.
  for _, key in ipairs({ "cmd", "filetypes", "root_markers" }) do
    if opts and opts[key] ~= nil then
      M.config[key] = opts[key]
    end
  end
  M.define_commands()
  api.nvim_set_hl(0, "CodeswiftGhost", { link = "Comment", default = true })
  augroup = api.nvim_create_augroup("codeswift", { clear = true })
  api.nvim_create_autocmd("FileType", {
    group = augroup,
    pattern = M.config.filetypes,
    callback = function(args)
      M.start(args.buf)
    end,
  })
  api.nvim_create_autocmd("LspAttach", {
    group = augroup,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == NAME then
        attach(args.buf, client)
      end
    end,
  })
  api.nvim_create_autocmd("LspDetach", {
    group = augroup,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == NAME then
        detach(args.buf)
      end
    end,
  })
  api.nvim_create_autocmd("ColorScheme", {
    group = augroup,
    callback = function()
      api.nvim_set_hl(0, "CodeswiftGhost", { link = "Comment", default = true })
    end,
  })
  -- setup() may run after files are open (lazy loading): attach those too.
  local wanted = {}
  for _, ft in ipairs(M.config.filetypes) do
    wanted[ft] = true
  end
  for _, b in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(b) and wanted[vim.bo[b].filetype] then
      local client = get_client(b)
      if client then
        attach(b, client)
      else
        M.start(b)
      end
    end
  end
end

return M
