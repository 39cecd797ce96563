-- The bench's resource: a GitHub repository kind as an integration would
-- map it (bench/mapping.jq is the same mapping as one jq program).
return {
  kind = "repository",
  selector = { query = ".archived == false" },
  port = { entity = { mappings = {
    identifier = ".full_name",
    title = ".name",
    blueprint = '"githubRepository"',
    properties = {
      description = ".description",
      url = ".html_url",
      language = ".language",
      stars = ".stargazers_count",
      forks = ".forks_count",
      open_issues = ".open_issues_count",
      default_branch = ".default_branch",
      visibility = ".visibility",
      topics = ".topics",
      license = ".license.spdx_id",
      created_at = ".created_at",
      last_push = ".pushed_at",
      clone = '"git clone " + .clone_url',
      size_mb = "(.size / 1024 | floor)",
      private = ".private",
    },
    relations = {
      owner = ".owner.login",
      teams = '.topics | map(select(startswith("team-")))',
    },
  } } },
}
