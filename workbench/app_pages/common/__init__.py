"""What every page shares, one module per concern; pages import the names from here.

- `session`: the store handle, who is using the app (OIDC, a reviewer list or a typed name) and
  the rule that nothing happens before sign-in.
- `errors`: `run` / `attempt`, the one place a service's `SiftError` becomes `st.error`.
- `safe_text`: markdown escaping, the review guide that loads nothing, links between pages.
- `conversation`: chat bubbles with flags inline, revision diffs.
- `filters`: the list filter bar.
"""

from workbench.app_pages.common.conversation import (
    ROLE_AVATAR,
    FlagSpan,
    diff_markdown,
    flag_notice,
    flag_spans,
    flag_turn,
    highlight_markdown,
    message_text,
    render_conversation,
    render_diff,
    render_message,
    split_flags,
)
from workbench.app_pages.common.errors import attempt, domain_errors, run
from workbench.app_pages.common.filters import filter_bar, filter_options
from workbench.app_pages.common.safe_text import md_escape, page_link, safe_guide_markdown
from workbench.app_pages.common.session import (
    auth_mode,
    client_address,
    current_actor,
    get_wb,
    may_configure,
    oidc_providers,
    oidc_user,
    require_actor,
    reviewer_list_path,
    secrets_mapping,
    sidebar,
    store_path,
)

__all__ = [
    "ROLE_AVATAR",
    "FlagSpan",
    "attempt",
    "auth_mode",
    "client_address",
    "current_actor",
    "diff_markdown",
    "domain_errors",
    "filter_bar",
    "filter_options",
    "flag_notice",
    "flag_spans",
    "flag_turn",
    "get_wb",
    "highlight_markdown",
    "may_configure",
    "md_escape",
    "message_text",
    "oidc_providers",
    "oidc_user",
    "page_link",
    "render_conversation",
    "render_diff",
    "render_message",
    "require_actor",
    "reviewer_list_path",
    "run",
    "safe_guide_markdown",
    "secrets_mapping",
    "sidebar",
    "split_flags",
    "store_path",
]
