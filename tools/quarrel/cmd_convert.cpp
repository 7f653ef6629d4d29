// quarrel synth and quarrel quantize: make benchmark models of any public
// shape, and re-encode a model's matrices with ggml's block formats.
#include "command.h"
#include "common/error.h"
#include "convert/quantize.h"
#include "convert/synth.h"

namespace quarrel::cli {
namespace {

struct SynthOptions {
  std::string shape, vocab, type = "f16", out;
  uint64_t seed = 1;
};

struct QuantizeOptions {
  std::string in, out, type;
};

CommandRegistration synth_reg{[](CLI::App& app) {
  auto o = std::make_shared<SynthOptions>();
  auto* cmd = app.add_subcommand("synth", "Write a GGUF with seeded random weights in a public model's shape");
  std::vector<std::string> names;
  for (const auto& s : convert::shapes()) names.emplace_back(s.name);
  cmd->add_option("--shape", o->shape, "model shape")->required()->check(CLI::IsMember(names));
  cmd->add_option("--vocab", o->vocab, "GGUF file to copy the vocabulary from")->required();
  cmd->add_option("--type", o->type, "matrix type: f32, f16 or bf16")->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_option("--seed", o->seed, "random seed");
  cmd->add_option("-o,--output", o->out, "output GGUF path")->required();
  cmd->callback([o] {
    convert::synth(convert::shape_find(o->shape), o->vocab, tensor::dtype_from_name(o->type), o->seed, o->out);
    fmt::print(stderr, "wrote {} ({} shape, {})\n", o->out, o->shape, o->type);
  });
}};

CommandRegistration quantize_reg{[](CLI::App& app) {
  auto o = std::make_shared<QuantizeOptions>();
  auto* cmd = app.add_subcommand("quantize", "Re-encode a model's weight matrices (q8_0, q4_0, q4_1, q5_0, q5_1)");
  cmd->add_option("input", o->in, "input GGUF")->required();
  cmd->add_option("output", o->out, "output GGUF")->required();
  cmd->add_option("type", o->type, "target type")->required();
  cmd->callback([o] {
    convert::quantize(o->in, o->out, tensor::dtype_from_name(o->type));
    fmt::print(stderr, "wrote {} ({})\n", o->out, o->type);
  });
}};

}  // namespace
}  // namespace quarrel::cli
