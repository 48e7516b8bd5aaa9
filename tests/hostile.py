"""Hypothesis strategies for hostile and sloppy client input."""

from hypothesis import strategies as st

# Any Python text, lone surrogates included (``st.text`` alone almost never draws one; a
# JSON ``"\ud800"`` escape decodes to exactly such a string).
any_text = st.text(max_size=40) | st.lists(
    st.characters() | st.characters(categories=["Cs"]), max_size=40
).map("".join)
