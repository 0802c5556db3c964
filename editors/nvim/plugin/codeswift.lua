-- Defines the :Codeswift* commands. Nothing starts until require("codeswift").setup{...}.
if vim.g.loaded_codeswift == 1 then
  return
end
vim.g.loaded_codeswift = 1

require("codeswift").define_commands()
