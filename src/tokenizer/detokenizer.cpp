#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace quarrel::tokenizer {

Detokenizer::Detokenizer(const Tokenizer& tokenizer, DecodeOptions options)
    : tokenizer_(&tokenizer), options_(options) {}

std::string Detokenizer::push(int32_t id) {
  const size_t before = pending_.size();
  tokenizer_->append_piece(id, options_.render_special, pending_);
  if (first_ && pending_.size() > before) {
    // Mirrors decode(): the space encode() prefixed belongs to no one.
    if (options_.strip_leading_space && tokenizer_->add_space_prefix() && pending_[before] == ' ') {
      pending_.erase(before, 1);
    }
    first_ = false;
  }
  std::string out;
  const size_t used = utf8_sanitize(pending_, out, /*final=*/false);
  pending_.erase(0, used);
  return out;
}

std::string Detokenizer::flush() {
  std::string out;
  utf8_sanitize(pending_, out, /*final=*/true);
  pending_.clear();
  return out;
}

}  // namespace quarrel::tokenizer
