"""The classifier's built-in vocabulary: keywords per default class, reasoning cues,
shell commands and file extensions. Fixed words only, never the user's."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "BUILT_IN_KEYWORDS",
    "COMPLEXITY_CUES",
    "FILE_EXTENSIONS",
    "MULTI_STEP_WORDS",
    "SHELL_COMMANDS",
]

# fmt: off
BUILT_IN_KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "fast": (
            "hi", "hello", "hey", "hallo", "thanks", "thank you", "good morning", "good night",
            "how are you", "who is", "who was", "who wrote", "when did", "when was", "what year",
            "capital", "define", "meaning of", "stand for", "synonym", "antonym", "spell",
            "translate", "convert", "how many", "joke", "haiku", "poem", "recipe", "weather",
            "quick", "briefly", "one sentence",
    ),
    "code": (
            "python", "javascript", "typescript", "rust", "golang", "java", "c++", "c#", "sql",
            "bash", "shell", "linux", "unix", "terminal", "command", "one-liner", "script",
            "function", "funktion", "class", "method", "variable", "regex", "compile",
            "compiler", "debug", "bug", "exception", "stack trace", "error", "git", "commit",
            "docker", "dockerfile", "kubernetes", "kubectl", "pod", "pods", "npm", "pip", "cron",
            "systemd", "systemctl", "ssh", "grep", "sed", "awk", "chmod", "sudo", "port",
            "process", "query", "api", "json", "yaml", "closure", "tuple", "list comprehension",
            "type hints", "malloc", "pointer", "segmentation fault", "null", "undefined",
            "async", "await", "unit test", "refactor", "nginx", "node", "pandas", "numpy",
            "react", "django", "flask", "css", "html", "http", "database", "server", "ubuntu",
            "debian", "install", "package", "dependency", "library", "permission denied",
            "disk space", "file", "files", "directory",
    ),
    "heavy": (
            "theorem", "essay", "philosophy", "philosophical", "ethics", "ethical", "economic",
            "economics", "policy", "policies", "geopolitical", "historical", "research",
            "hypothesis", "methodology", "proposal", "architecture", "distributed",
            "scalability", "at scale", "microservices", "consistency", "strategy", "roadmap",
            "long-term", "implications", "recommendation", "budget", "probability",
            "regression", "integral", "derivation",
    ),
}
"""The keywords a class named fast, code or heavy gets when its config sets none."""

# Built-in complexity vocabulary: reasoning verbs and multi-step wording.
COMPLEXITY_CUES = (
    "explain why", "explain how", "compare", "contrast", "analyse", "analyze", "analysis",
    "design", "prove", "proof", "derive", "evaluate", "assess", "critique", "justify", "argue",
    "trade-off", "trade-offs", "tradeoff", "tradeoffs", "pros and cons", "step by step",
    "in depth", "in detail", "walk me through", "what would happen", "implications",
    "outline", "propose", "plan", "how would you", "which is more", "discuss", "consider",
)
MULTI_STEP_WORDS = (
    "first", "then", "finally", "also", "additionally", "after that", "and then",
    "including", "as well as", "and what",
)
SHELL_COMMANDS = frozenset((
    "sudo", "ls", "cd", "cat", "ps", "grep", "awk", "sed", "find", "curl", "wget", "chmod",
    "chown", "docker", "kubectl", "git", "pip", "npm", "systemctl", "journalctl", "ssh", "tar",
    "apt", "yum", "brew",
))
FILE_EXTENSIONS = (
    "py", "js", "ts", "tsx", "jsx", "rs", "go", "c", "cc", "cpp", "h", "hpp", "java", "kt",
    "rb", "php", "sh", "bash", "zsh", "ps1", "sql", "yaml", "yml", "json", "toml", "ini",
    "cfg", "conf", "log", "lock", "env", "service", "tf", "gradle", "xml", "csv",
)
# fmt: on
