# bench/mapping.jq: bench/resource.lua as one jq program, for the jq CLI.
select(.archived == false) | {identifier: .full_name, title: .name, blueprint: "githubRepository",
 properties: {description: .description, url: .html_url, language: .language, stars: .stargazers_count,
   forks: .forks_count, open_issues: .open_issues_count, default_branch: .default_branch, visibility: .visibility,
   topics: .topics, license: .license.spdx_id, created_at: .created_at, last_push: .pushed_at,
   clone: ("git clone " + .clone_url), size_mb: (.size / 1024 | floor), private: .private},
 relations: {owner: .owner.login, teams: (.topics | map(select(startswith("team-"))))}}
