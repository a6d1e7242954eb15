#!/usr/bin/env python3
"""Makes Tests/Fixtures/text/templates/chat_templates.json: real Hugging Face chat templates rendered by
transformers' own apply_chat_template(messages, tokenize=False, add_generation_prompt=...).

Run with the reference environment:  /opt/lora-ref-venv/bin/python scripts/make_template_fixtures.py

The template strings below are copied verbatim from public repositories that carry the models'
chat_template (the source of each is noted above it). No hub access is needed: each template is set on a
tiny locally built PreTrainedTokenizerFast whose special tokens are those of the model, so that
apply_chat_template sees the same special_tokens_map (bos_token, eos_token, ...) as with the real tokenizer.

For every template and conversation, both add_generation_prompt=False and True are rendered. The fixture
records the exact output, or for a raising render the exception's type and message
(raise_exception(msg) surfaces as jinja2.exceptions.TemplateError(msg)).
"""
import json
import os
import sys

import jinja2
import transformers
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

# name: (family, template source)
TEMPLATE_SOURCES = {
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/qwen2:0.5b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of Qwen/Qwen2-0.5B-Instruct)
    'qwen2': ('chatml-qwen2', "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["Qwen/Qwen2.5-7B-Instruct"].chat_template
    'qwen2_5': ('qwen2.5', '{%- if tools %}\n    {{- \'<|im_start|>system\\n\' }}\n    {%- if messages[0][\'role\'] == \'system\' %}\n        {{- messages[0][\'content\'] }}\n    {%- else %}\n        {{- \'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\' }}\n    {%- endif %}\n    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n    {%- for tool in tools %}\n        {{- "\\n" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n{%- else %}\n    {%- if messages[0][\'role\'] == \'system\' %}\n        {{- \'<|im_start|>system\\n\' + messages[0][\'content\'] + \'<|im_end|>\\n\' }}\n    {%- else %}\n        {{- \'<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n\' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}\n        {{- \'<|im_start|>\' + message.role + \'\\n\' + message.content + \'<|im_end|>\' + \'\\n\' }}\n    {%- elif message.role == "assistant" %}\n        {{- \'<|im_start|>\' + message.role }}\n        {%- if message.content %}\n            {{- \'\\n\' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- \'\\n<tool_call>\\n{"name": "\' }}\n            {{- tool_call.name }}\n            {{- \'", "arguments": \' }}\n            {{- tool_call.arguments | tojson }}\n            {{- \'}\\n</tool_call>\' }}\n        {%- endfor %}\n        {{- \'<|im_end|>\\n\' }}\n    {%- elif message.role == "tool" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n            {{- \'<|im_start|>user\' }}\n        {%- endif %}\n        {{- \'\\n<tool_response>\\n\' }}\n        {{- message.content }}\n        {{- \'\\n</tool_response>\' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n            {{- \'<|im_end|>\\n\' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- \'<|im_start|>assistant\\n\' }}\n{%- endif %}\n'),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/llama2:7b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of meta-llama/Llama-2-7b-chat-hf)
    'llama2': ('llama2', "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/llama3:8b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of meta-llama/Meta-Llama-3-8B-Instruct)
    'llama3': ('llama3', "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["meta-llama/Llama-3.1-8B-Instruct"].chat_template
    'llama3_1': ('llama3.1', '{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- set date_string = "26 Jul 2024" %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0][\'role\'] == \'system\' %}\n    {%- set system_message = messages[0][\'content\']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = "" %}\n{%- endif %}\n\n{#- System message + builtin tools #}\n{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n{%- if builtin_tools is defined or tools is not none %}\n    {{- "Environment: ipython\\n" }}\n{%- endif %}\n{%- if builtin_tools is defined %}\n    {{- "Tools: " + builtin_tools | reject(\'equalto\', \'code_interpreter\') | join(", ") + "\\n\\n"}}\n{%- endif %}\n{{- "Cutting Knowledge Date: December 2023\\n" }}\n{{- "Today Date: " + date_string + "\\n\\n" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}\n    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- "\\n\\n" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- "<|eot_id|>" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0][\'content\']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception("Cannot put tools in the first user message when there\'s no first user message!") }}\n{%- endif %}\n    {{- \'<|start_header_id|>user<|end_header_id|>\\n\\n\' -}}\n    {{- "Given the following functions, please respond with a JSON for a function call " }}\n    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}\n    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- "\\n\\n" }}\n    {%- endfor %}\n    {{- first_user_message + "<|eot_id|>"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == \'ipython\' or message.role == \'tool\' or \'tool_calls\' in message) %}\n        {{- \'<|start_header_id|>\' + message[\'role\'] + \'<|end_header_id|>\\n\\n\'+ message[\'content\'] | trim + \'<|eot_id|>\' }}\n    {%- elif \'tool_calls\' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception("This model only supports single tool-calls at once!") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n            {{- \'<|start_header_id|>assistant<|end_header_id|>\\n\\n\' -}}\n            {{- "<|python_tag|>" + tool_call.name + ".call(" }}\n            {%- for arg_name, arg_val in tool_call.arguments | items %}\n                {{- arg_name + \'="\' + arg_val + \'"\' }}\n                {%- if not loop.last %}\n                    {{- ", " }}\n                {%- endif %}\n                {%- endfor %}\n            {{- ")" }}\n        {%- else  %}\n            {{- \'<|start_header_id|>assistant<|end_header_id|>\\n\\n\' -}}\n            {{- \'{"name": "\' + tool_call.name + \'", \' }}\n            {{- \'"parameters": \' }}\n            {{- tool_call.arguments | tojson }}\n            {{- "}" }}\n        {%- endif %}\n        {%- if builtin_tools is defined %}\n            {#- This means we\'re in ipython mode #}\n            {{- "<|eom_id|>" }}\n        {%- else %}\n            {{- "<|eot_id|>" }}\n        {%- endif %}\n    {%- elif message.role == "tool" or message.role == "ipython" %}\n        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- "<|eot_id|>" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- \'<|start_header_id|>assistant<|end_header_id|>\\n\\n\' }}\n{%- endif %}\n'),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/llama3.2:3b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of meta-llama/Llama-3.2-3B-Instruct)
    'llama3_2': ('llama3.2', '{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now("%d %b %Y") %}\n    {%- else %}\n        {%- set date_string = "26 Jul 2024" %}\n    {%- endif %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0][\'role\'] == \'system\' %}\n    {%- set system_message = messages[0][\'content\']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = "" %}\n{%- endif %}\n\n{#- System message #}\n{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n{%- if tools is not none %}\n    {{- "Environment: ipython\\n" }}\n{%- endif %}\n{{- "Cutting Knowledge Date: December 2023\\n" }}\n{{- "Today Date: " + date_string + "\\n\\n" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}\n    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- "\\n\\n" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- "<|eot_id|>" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0][\'content\']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception("Cannot put tools in the first user message when there\'s no first user message!") }}\n{%- endif %}\n    {{- \'<|start_header_id|>user<|end_header_id|>\\n\\n\' -}}\n    {{- "Given the following functions, please respond with a JSON for a function call " }}\n    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}\n    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- "\\n\\n" }}\n    {%- endfor %}\n    {{- first_user_message + "<|eot_id|>"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == \'ipython\' or message.role == \'tool\' or \'tool_calls\' in message) %}\n        {{- \'<|start_header_id|>\' + message[\'role\'] + \'<|end_header_id|>\\n\\n\'+ message[\'content\'] | trim + \'<|eot_id|>\' }}\n    {%- elif \'tool_calls\' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception("This model only supports single tool-calls at once!") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {{- \'<|start_header_id|>assistant<|end_header_id|>\\n\\n\' -}}\n        {{- \'{"name": "\' + tool_call.name + \'", \' }}\n        {{- \'"parameters": \' }}\n        {{- tool_call.arguments | tojson }}\n        {{- "}" }}\n        {{- "<|eot_id|>" }}\n    {%- elif message.role == "tool" or message.role == "ipython" %}\n        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- "<|eot_id|>" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- \'<|start_header_id|>assistant<|end_header_id|>\\n\\n\' }}\n{%- endif %}\n'),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["TheBloke/Mistral-7B-Instruct-v0.1-GPTQ"].chat_template
    'mistral_v0_1': ('mistral-v0.1', "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/mistral:7b-instruct-fp16" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of mistralai/Mistral-7B-Instruct-v0.2)
    'mistral_v0_2': ('mistral-v0.2', "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["mistralai/Mistral-7B-Instruct-v0.3 (JSON Schema)"].chat_template
    'mistral_v0_3': ('mistral-v0.3', '{{- bos_token }}\n{%- set user_messages = messages | selectattr(\'role\', \'equalto\', \'user\') | list %}\n{%- for message in messages %}\n    {%- if message[\'role\'] == \'user\' %}\n        {%- if tools and (message == user_messages[-1]) %}\n            {{- \' [AVAILABLE_TOOLS] [\' }}\n            {%- for tool in tools %}\n\t\t{%- set tool = tool.function %}\n\t\t{{- \'{"type": "function", "function": {\' }}\n\t\t{%- for key, val in tool|items if key != "return" %}\n\t\t    {%- if val is string %}\n\t\t\t{{- \'"\' + key + \'": "\' + val + \'"\' }}\n\t\t    {%- else %}\n\t\t\t{{- \'"\' + key + \'": \' + val|tojson }}\n\t\t    {%- endif %}\n\t\t    {%- if not loop.last %}\n\t\t\t{{- ", " }}\n\t\t    {%- endif %}\n\t\t{%- endfor %}\n\t\t{{- "}}" }}\n                {%- if not loop.last %}\n                    {{- ", " }}\n                {%- else %}\n                    {{- "]" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \' [/AVAILABLE_TOOLS]\' }}\n            {%- endif %}\n        {{- \' [INST] \' + message[\'content\'] + \' [/INST]\' }}\n    {%- elif message[\'role\'] == \'assistant\' %}\n        {%- if message.tool_calls is defined and message.tool_calls|length > 0 %}\n            {{- \' [TOOL_CALLS] [\' }}\n            {%- for tool_call in message.tool_calls %}\n                {{- {"name": tool_call.function.name, "arguments": tool_call.function.arguments, "id": tool_call.id}|tojson }}\n                {%- if not loop.last %}\n                    {{- ", " }}\n                {%- endif %}\n            {%- endfor %}\n            {{- \'] \' }}\n            {{- eos_token }}\n    \t{%- elif message.content is defined %}\n\t    {{- \' \' + message.content + \' \' + eos_token}}\n        {%- endif %}\n    {%- elif message[\'role\'] == \'tool\' %}\n        {{- \' [TOOL_RESULTS] \' }}\n        {{- \'{"call_id": "\' + message.tool_call_id + \'", "content": \' + message.content|string + \'}\' }}\n        {{- \' [/TOOL_RESULTS] \' }}\n    {%- endif %}\n{%- endfor %}\n'),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/mixtral:8x7b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of mistralai/Mixtral-8x7B-Instruct-v0.1)
    'mixtral': ('mixtral', "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n"),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["mistralai/Mistral-Nemo-Instruct-2407"].chat_template
    'mistral_nemo': ('mistral-nemo', '{%- if messages[0]["role"] == "system" %}\n    {%- set system_message = messages[0]["content"] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}\n\n{%- for message in loop_messages | rejectattr("role", "equalto", "tool") | rejectattr("role", "equalto", "tool_results") | selectattr("tool_calls", "undefined") %}\n    {%- if (message["role"] == "user") != (loop.index0 % 2 == 0) %}\n        {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}\n    {%- endif %}\n{%- endfor %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message["role"] == "user" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- "[AVAILABLE_TOOLS][" }}\n            {%- for tool in tools %}\n        {%- set tool = tool.function %}\n        {{- \'{"type": "function", "function": {\' }}\n        {%- for key, val in tool.items() if key != "return" %}\n            {%- if val is string %}\n            {{- \'"\' + key + \'": "\' + val + \'"\' }}\n            {%- else %}\n            {{- \'"\' + key + \'": \' + val|tojson }}\n            {%- endif %}\n            {%- if not loop.last %}\n            {{- ", " }}\n            {%- endif %}\n        {%- endfor %}\n        {{- "}}" }}\n                {%- if not loop.last %}\n                    {{- ", " }}\n                {%- else %}\n                    {{- "]" }}\n                {%- endif %}\n            {%- endfor %}\n            {{- "[/AVAILABLE_TOOLS]" }}\n            {%- endif %}\n        {%- if loop.last and system_message is defined %}\n            {{- "[INST]" + system_message + "\\n\\n" + message["content"] + "[/INST]" }}\n        {%- else %}\n            {{- "[INST]" + message["content"] + "[/INST]" }}\n        {%- endif %}\n    {%- elif message["role"] == "tool_calls" or message.tool_calls is defined %}\n        {%- if message.tool_calls is defined %}\n            {%- set tool_calls = message.tool_calls %}\n        {%- else %}\n            {%- set tool_calls = message.content %}\n        {%- endif %}\n        {{- "[TOOL_CALLS][" }}\n        {%- for tool_call in tool_calls %}\n            {%- set out = tool_call.function|tojson %}\n            {{- out[:-1] }}\n            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n            {%- endif %}\n            {{- \', "id": "\' + tool_call.id + \'"}\' }}\n            {%- if not loop.last %}\n                {{- ", " }}\n            {%- else %}\n                {{- "]" + eos_token }}\n            {%- endif %}\n        {%- endfor %}\n    {%- elif message["role"] == "assistant" %}\n        {{- message["content"] + eos_token}}\n    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {{- \'[TOOL_RESULTS]{"content": \' + content|string + ", " }}\n        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n        {%- endif %}\n        {{- \'"call_id": "\' + message.tool_call_id + \'"}[/TOOL_RESULTS]\' }}\n    {%- else %}\n        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}\n    {%- endif %}\n{%- endfor %}\n'),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["HuggingFaceH4/zephyr-7b-beta (add_generation_prompt=false)"].chat_template
    'zephyr': ('zephyr', "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/gemma2:2b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of google/gemma-2-2b-it)
    'gemma': ('gemma', "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/gemma3:1b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of google/gemma-3-1b-it)
    'gemma3': ('gemma3', '{{ bos_token }}\n{%- if messages[0][\'role\'] == \'system\' -%}\n    {%- set first_user_prefix = messages[0][\'content\'][0][\'text\'] + \'\n\n\' -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = "" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message[\'role\'] == \'user\') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n    {%- endif -%}\n    {%- if (message[\'role\'] == \'assistant\') -%}\n        {%- set role = "model" -%}\n    {%- else -%}\n        {%- set role = message[\'role\'] -%}\n    {%- endif -%}\n    {{ \'<start_of_turn>\' + role + \'\n\' + (first_user_prefix if loop.first else "") }}\n    {%- if message[\'content\'] is string -%}\n        {{ message[\'content\'] | trim }}\n    {%- elif message[\'content\'] is iterable -%}\n        {%- for item in message[\'content\'] -%}\n            {%- if item[\'type\'] == \'image\' -%}\n                {{ \'<start_of_image>\' }}\n            {%- elif item[\'type\'] == \'text\' -%}\n                {{ item[\'text\'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception("Invalid content type") }}\n    {%- endif -%}\n    {{ \'<end_of_turn>\n\' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{\'<start_of_turn>model\n\'}}\n{%- endif -%}\n'),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/phi3:3.8b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of microsoft/Phi-3-mini-4k-instruct)
    'phi3': ('phi3', "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/phi3.5:3.8b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of microsoft/Phi-3.5-mini-instruct)
    'phi3_5': ('phi3.5', "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/smollm2:135m" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of HuggingFaceTB/SmolLM2-135M-Instruct)
    'smollm2': ('smollm2', "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["deepseek-ai/deepseek-llm-7b-chat"].chat_template
    'deepseek_llm': ('deepseek', "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/deepseek-coder:1.3b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of deepseek-ai/deepseek-coder-1.3b-instruct)
    'deepseek_coder': ('deepseek-coder', "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/deepseek-r1:8b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of deepseek-ai/DeepSeek-R1-Distill-Llama-8B)
    'deepseek_r1': ('deepseek-r1', "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/yi:6b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of 01-ai/Yi-6B-Chat)
    'yi': ('yi', "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% endif %}{% if system_message is defined %}{{ system_message }}{% endif %}{% for message in messages %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|im_start|>user\\n' + content + '<|im_end|>\\n<|im_start|>assistant\\n' }}{% elif message['role'] == 'assistant' %}{{ content + '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/command-r:35b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of CohereForAI/c4ai-command-r-v01)
    'command_r': ('command-r', "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif false == true %}{% set loop_messages = messages %}{% set system_message = 'You are a large language model called Command R built by the company Cohere. You act as a brilliant, sophisticated, AI-assistant chatbot trained to assist human users by providing thorough responses.' %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% if system_message != false %}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% elif message['role'] == 'assistant' %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'  + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/ollama-utils/src/chat-template-automap.ts (commit fe42e680), entry model="library/tinyllama:1.1b" (the GGUF tokenizer.chat_template, copied from the HF tokenizer_config.json of TinyLlama/TinyLlama-1.1B-Chat-v1.0)
    'tinyllama': ('tinyllama', "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["openchat/openchat-3.5-0106"].chat_template
    'openchat': ('openchat', "{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}{% endfor %}{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}"),
    # Source: huggingface/huggingface.js packages/jinja/test/e2e.test.js (commit fe42e680), TEST_CUSTOM_TEMPLATES["ericzzz/falcon-rw-1b-chat"].chat_template
    'falcon_rw': ('falcon', "{% for message in messages %}{% if loop.index > 1 and loop.previtem['role'] != 'assistant' %}{{ ' ' }}{% endif %}{% if message['role'] == 'system' %}{{ '[SYS] ' + message['content'].strip() }}{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'].strip() }}{% elif message['role'] == 'assistant' %}{{ '[RESP] '  + message['content'] + eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ ' [RESP] ' }}{% endif %}"),
}


# Special tokens of each family's real tokenizer (what special_tokens_map gives the template).
SPECIAL_TOKENS = {
    "qwen2": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen2_5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "llama2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3_1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3_2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral_v0_1": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral_v0_2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral_v0_3": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mixtral": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral_nemo": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "zephyr": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
    "gemma": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "gemma3": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "phi3": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
    "phi3_5": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"},
    "deepseek_llm": {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"},
    "deepseek_coder": {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "eos_token": "<|EOT|>"},
    "deepseek_r1": {"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "eos_token": "<\uff5cend\u2581of\u2581sentence\uff5c>"},
    "yi": {"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "unk_token": "<unk>", "pad_token": "<unk>"},
    "command_r": {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>", "unk_token": "<UNK>", "pad_token": "<PAD>"},
    "tinyllama": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
    "openchat": {"bos_token": "<s>", "eos_token": "<|end_of_turn|>", "unk_token": "<unk>"},
    "falcon_rw": {"eos_token": "<|endoftext|>"},
}

# Extra keyword arguments handed to apply_chat_template (template variables), per template.
EXTRA_VARIABLES = {
    # Without date_string the template calls strftime_now, whose output depends on the day.
    "llama3_2": {"date_string": "05 Nov 2026"},
}

# Templates that understand `tools` (get the tool-calling conversation with tools=TOOLS).
TOOL_TEMPLATES = ["qwen2_5", "llama3_1", "llama3_2", "mistral_v0_3", "mistral_nemo"]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "system_single": [SYSTEM, {"role": "user", "content": "What is 2+2?"}],
    "multi": [
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road? To get to the other side."},
        {"role": "user", "content": "Another one, please."},
    ],
    "system_multi": [
        {"role": "system", "content": "You are a pirate. Answer like one."},
        {"role": "user", "content": "Where is the treasure?"},
        {"role": "assistant", "content": "Arr, buried on the island!"},
        {"role": "user", "content": "Which island?"},
    ],
    "chinese": [
        {"role": "system", "content": "\u4f60\u662f\u4e00\u4e2a\u4e50\u4e8e\u52a9\u4eba\u7684\u52a9\u624b\u3002"},
        {"role": "user", "content": "\u4f60\u597d\uff0c\u8bf7\u4ecb\u7ecd\u4e00\u4e0b\u5317\u4eac\u3002"},
        {"role": "assistant", "content": "\u5317\u4eac\u662f\u4e2d\u56fd\u7684\u9996\u90fd\uff0c\u6709\u4e09\u5343\u591a\u5e74\u7684\u5386\u53f2\u3002"},
        {"role": "user", "content": "\u8c22\u8c22\uff01"},
    ],
    "emoji": [
        {"role": "user", "content": "Hi \U0001F44B\U0001F3FD can you \U0001F916 help? \U0001F468\u200d\U0001F469\u200d\U0001F467"},
        {"role": "assistant", "content": "Sure! \U0001F600\u2728"},
        {"role": "user", "content": "\U0001F1EB\U0001F1F7 or \U0001F1E9\U0001F1EA?"},
    ],
    "whitespace": [
        {"role": "user", "content": "   leading and trailing spaces   "},
        {"role": "assistant", "content": "\nline one\nline two\n\n"},
        {"role": "user", "content": "\ttabbed\tinside\t and \r\n crlf \n"},
    ],
    "not_alternating": [
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second."},
    ],
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather \u2600\ufe0f in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 1.0},
                },
                "required": ["location"],
            },
        },
    }
]
TOOL_CONVERSATION = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call12345",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "22.5"},
    {"role": "assistant", "content": "It is 22.5 \u00b0C in Paris."},
    {"role": "user", "content": "Thanks!"},
]
CONVERSATIONS["tool_calls"] = TOOL_CONVERSATION
# Multimodal-style content: a list of typed parts (Gemma 3 reads messages[0]['content'][0]['text']).
CONVERSATIONS["content_parts"] = [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "user", "content": [{"type": "text", "text": "  Describe this  "}, {"type": "image"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
    {"role": "user", "content": "And now?"},
]
# Conversations only given to some templates.
SPECIAL_CONVERSATIONS = {"tool_calls": TOOL_TEMPLATES, "content_parts": ["gemma3"]}


# ---------------------------------------------------------------------------------------------------
# Interpreter snippets: small templates exercising one feature each, rendered by the very Jinja
# environment transformers builds for chat templates (same filters, globals, trim/lstrip settings).
# Each renders against SNIPPET_CONTEXT plus what ChatTemplate.render always defines.
SNIPPET_CONTEXT = {
    "l": [1, 2, 3, 4, 5],
    "s": "h\u00e9llo\U0001F44B\U0001F3FD",
    "d": {"a": 1, "n": {"x": [1, {"y": None}]}, "s": "\u00fc"},
    "msgs": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi", "tool": "t"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ],
}
# (name, template, check_message): with check_message the exact error message is compared too.
SNIPPETS = [
    # whitespace control, trim_blocks, lstrip_blocks, comments, raw, newlines
    ("ws_lstrip_trim", "  {% if true %}\n    yes\n  {% endif %}\nafter", False),
    ("ws_minus", "a  {%- if true -%}  b  {%- endif -%}  c", False),
    ("ws_var_minus", "x  {{- ' y ' -}}  \n  {{ 'z' }}  ", False),
    ("ws_comment", "line1\n  {# comment #}\nline2\n{#- c2 -#}   \n  line3", False),
    ("ws_plus_lstrip", "  {%+ if true %}x{% endif %}", False),
    ("ws_plus_trim", "{% if true +%}\nx{% endif %}", False),
    ("ws_raw", "{% raw %}{{ not parsed }} {% if %}{% endraw %}", False),
    ("ws_raw_lines", "  {% raw %}\n{{ x }}\n  {% endraw %}\nend", False),
    ("ws_crlf", "a\r\nb\r\n{% if true %}\r\nc{% endif %}\n", False),
    ("ws_not_line_start", "{{ 'a' }}   {% if true %}b{% endif %}", False),
    ("ws_trailing_newlines", "text\n\n", False),
    ("ws_for_lines", "x {{ 1 }}\n{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\nend\n", False),
    ("ws_tabs", "\t\t{% if true %}\t{{ 'a' }}\t\n\t{% endif %}\t.", False),
    ("ws_nested_dash", "{%- for i in [1, 2] -%}\n   [{{- i -}}]\n{%- endfor -%}\n!", False),
    # loops
    ("loop_vars", "{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", False),
    ("loop_prev_next", "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}", False),
    ("loop_else", "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in [1] %}{{ x }}{% else %}no{% endfor %}", False),
    ("loop_filter", "{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }}{{ loop.last }},{% endfor %}", False),
    ("loop_unpack_items", "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | items %}{{ k }},{% endfor %}{% for k in d %}{{ k }}{% endfor %}", False),
    ("loop_break_continue", "{% for x in range(10) %}{% if x == 7 %}{% break %}{% endif %}{% if x is even %}{% continue %}{% endif %}{{ x }}{% endfor %}", False),
    ("loop_depth", "{% for a in [1,2] %}{% for b in [3,4] %}{{ loop.depth }}{{ a }}{{ b }} {% endfor %}{{ loop.depth }}{% endfor %}", False),
    ("loop_scope", "{% set x = 5 %}{% for i in [1,2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}{{ x }}", False),
    ("loop_cycle", "{% for i in range(4) %}{{ loop.cycle('a','b','c') }}{% endfor %}", False),
    ("loop_string", "{% for c in s %}[{{ c }}]{% endfor %}", False),
    ("loop_undefined", "{% for x in nothing %}x{% else %}none{% endfor %}", False),
    # set, namespace
    ("ns_basic", "{% set ns = namespace(found=false, n=0) %}{% for m in [1,2,3] %}{% set ns.n = ns.n + m %}{% if m == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.n }}", False),
    ("set_block", "{% set x %}  hello {{ 1 + 1 }}\n{% endset %}[{{ x }}]", False),
    ("set_block_filter", "{% set x | upper %}abc{% endset %}{{ x }}", False),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set (c, e) = [3, 4] %}{{ c }}{{ e }}", False),
    ("set_if_scope", "{% if true %}{% set y = 3 %}{% endif %}{{ y }}", False),
    ("set_messages_slice", "{% set loop_messages = msgs[1:] %}{{ loop_messages | length }}{{ loop_messages[0].role }}", False),
    # macros and call blocks
    ("macro_defaults", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet(name='Cy', greeting='Yo') }}", False),
    ("macro_caller", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 }}{% endcall %}", False),
    ("macro_caller_args", "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1,2]) %}[{{ x }}]{% endcall %}", False),
    ("macro_missing_arg", "{% macro f(a, b) %}{{ a }}|{{ b }}|{{ b is defined }}{% endmacro %}{{ f(1) }}", False),
    ("macro_varargs", "{% macro f(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ f(1, 2, 3, x=4) }}", False),
    ("macro_outer_var", "{% set g = 'G' %}{% macro f() %}{{ g }}{% endmacro %}{{ f() }}", False),
    ("macro_whitespace", "{%- macro render(m) -%}\n  <{{ m.role }}>\n{%- endmacro -%}\n{%- for m in msgs -%}\n{{ render(m) }}\n{%- endfor -%}", False),
    # indexing, slicing, attributes
    ("slice_list", "{{ l[1:] }}|{{ l[:-1] }}|{{ l[::-1] }}|{{ l[::2] }}|{{ l[-2:] }}|{{ l[10:] }}|{{ l[-1] }}|{{ l[1:3][0] }}|{{ l[4:1:-2] }}", False),
    ("slice_string", "{{ s[::-1] }}|{{ s[1:3] }}|{{ s | length }}|{{ s[-1] }}|{{ s[0] }}", False),
    ("attr_dict", "{{ d.a }}{{ d['a'] }}{{ d.missing is defined }}{{ d.get('missing', 'dflt') }}{{ d.get('a') }}{{ d.n.x[1].y }}{{ d['n']['x'][0] }}", False),
    ("attr_index_dot", "{{ l.0 }}{{ msgs.1.role }}{{ l[10] is defined }}", False),
    # operators, literals, printing
    ("ops_arith", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 3 ** 2 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-7 }} {{ 100000000000000000.0 }} {{ 123456.789e3 }} {{ -0.0 }} {{ 2 ** -1 }} {{ 10 / 4 * 2 }}", False),
    ("ops_concat", "{{ 'a' ~ 1 ~ none ~ true ~ 2.0 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'x' in 'xyz' }} {{ 2 not in [1,2] }} {{ 'k' in {'k': 1} }} {{ 'a' 'b' }}", False),
    ("ops_logic", "{{ 0 or 'b' }} {{ 'a' and 'b' }} [{{ '' and 'b' }}] {{ none or [] }} {{ not none }} {{ not 'x' }} {{ 1 and 0 }}", False),
    ("ops_ternary", "{{ 'y' if 1 > 0 else 'n' }} [{{ 'y' if false }}] {{ 'a' if false else 'b' if true else 'c' }}", False),
    ("ops_compare", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' }} {{ none == none }} {{ [1, 2] < [1, 3] }}", False),
    ("ops_unary", "{{ -l[0] }} {{ - 2 | abs }} {{ -(2) ** 2 }} {{ +3 }} {{ not true or true }}", False),
    ("print_types", "{{ none }} {{ true }} {{ 1.0 }} {{ [1, 'a', none, 1.5, {'k': 'v'}] }} {{ (1,) }} {{ (1, 'b') }} {{ {'a': [1, (2, 3)]} }} {{ \"it's\" }} {{ ['it\\'s', 'q\"', 'both\\'\"'] }} {{ ['\\n\\t', '\u00e9', '\u200d'] }}", False),
    ("print_undefined", "[{{ nothing }}][{{ nothing | default('d') }}][{{ '' | default('e', true) }}][{{ d.nope }}][{{ none | default('n') }}][{{ false | d('f', true) }}]", False),
    ("escapes", "{{ 'a\\tb\\\\c\\'d' }}|{{ \"\\u00e9\\x41\\101\" }}|{{ 'keep \\d' }}", False),
    # tests
    ("tests", "{{ none is none }} {{ 1 is number }} {{ 1.0 is integer }} {{ 1 is integer }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'x' is sequence }} {{ true is boolean }} {{ true is true }} {{ 0 is false }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'a' is equalto 'a' }} {{ none is sameas none }} {{ x is undefined }} {{ x is not defined }} {{ 1 is in [1] }} {{ 1.5 is float }} {{ d is mapping }} {{ msgs[0] is not string }} {{ 2 is eq 2 }} {{ 3 is gt 2 }} {{ 'abc' is lower }}", False),
    # filters
    ("f_text", "{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hello wORLD' | capitalize }}|{{ 'hello wORLD-foo (bar)' | title }}|{{ [1,2,3] | length }}|{{ 'abc' | count }}|{{ {'a':1} | length }}|{{ nothing | length }}", False),
    ("f_seq", "{{ [1,2,3] | join(', ') }}|{{ ['a','b'] | join }}|{{ [3,4] | first }}|{{ [3,4] | last }}|{{ 'ab' | list }}|{{ {'x':1,'y':2} | list }}|{{ msgs | join(', ', attribute='role') }}|{{ [1, 2] | reverse | list }}|{{ 'abc' | reverse }}", False),
    ("f_convert", "{{ 'aaa' | replace('a', 'b', 2) }}|{{ 12 | string }}|{{ '42' | int + 1 }}|{{ '4.7' | float }}|{{ 'x' | int }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 7 | round }}|{{ 2.1 | round(0, 'ceil') }}|{{ 3.99 | int }}|{{ ' 12 ' | int }}|{{ '3.9' | int }}|{{ 5 | float }}", False),
    ("f_items", "{{ {'b': 1, 'a': 2} | items | list }}|{{ {'b': 1, 'a': 2} | dictsort }}|{{ {'b': 1, 'a': 2} | dictsort(by='value', reverse=true) }}", False),
    ("f_map_select", "{{ msgs | map(attribute='role') | join(',') }}|{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}|{{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}|{{ [1,2,3,4] | select('odd') | list }}|{{ [1,2,3,4] | reject('even') | list }}|{{ msgs | selectattr('tool') | list | length }}|{{ ['a','B'] | map('upper') | list }}|{{ msgs | selectattr('tool', 'defined') | map(attribute='tool') | first }}|{{ msgs | map(attribute='nope', default='-') | join }}|{{ [1, 0, none, 'x'] | select | list }}|{{ [5, 12, 20] | select('gt', 10) | list }}", False),
    ("f_unique_sort", "{{ ['a','A','b','a'] | unique | list }}|{{ [3,1,2] | sort }}|{{ [3,1,2] | sort(reverse=true) }}|{{ ['b','A','c'] | sort }}|{{ ['b','A','c'] | sort(case_sensitive=true) }}|{{ msgs | sort(attribute='content') | map(attribute='content') | list }}|{{ [3, 1] | max }}|{{ [3, 1] | min }}|{{ [1, 2.5] | sum }}", False),
    ("f_indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'x\\ny' | indent('> ') }}", False),
    ("f_wordcount", "{{ 'hello big, wide-world' | wordcount }}", False),
    ("f_tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ [1, 2.5, none, true, '\u00e9\"\\n\\t\\u0001'] | tojson }}|{{ {'b':1,'a':[]} | tojson(sort_keys=true) }}|{{ '\u00fc\U0001F600' | tojson(ensure_ascii=true) }}|{{ {} | tojson(indent=4) }}|{{ d | tojson(separators=(',', ':')) }}|{{ msgs[0] | tojson(indent='\\t') }}|{{ (1, 2) | tojson }}|{{ 1.0 | tojson }}|{{ 1e100 | tojson }}", False),
    ("f_block", "{% filter upper %}abc {{ 'd' }}{% endfilter %}|{% filter trim | upper %}  x  {% endfilter %}", False),
    ("f_string_of_list", "{{ msgs[1] | string }}|{{ [1, 'a'] | string }}", False),
    # str / dict / list methods
    ("m_str", "{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  x '.lstrip() }}|{{ ' x  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a  b c '.split(none, 1) }}|{{ 'abc'.startswith('a') }}|{{ 'abc'.endswith(('x','c')) }}|{{ 'hello world'.title() }}|{{ 'ab'.upper() }}|{{ 'aXb'.replace('X', '-') }}|{{ 'abcb'.find('b') }}|{{ 'abcb'.find('z') }}|{{ 'abcb'.count('b') }}|{{ '{}-{}'.format(1, 'a') }}|{{ '{0}{name}'.format('x', name='y') }}|{{ 'a\\nb'.splitlines() }}|{{ ', '.join(['x', 'y']) }}|{{ 'abcbd'.rsplit('b', 1) }}|{{ 'a1'.isalnum() }}|{{ '12'.isdigit() }}|{{ 'x\\n'.rstrip('\\n') }}|{{ 'Hello'.lower().capitalize() }}", False),
    ("m_dict_list", "{% for k, v in d.items() %}{{ k }}{% endfor %}|{{ d.keys() | list }}|{{ d.values() | list | length }}|{{ [1, 2, 1].count(1) }}|{{ [5, 6].index(6) }}|{{ msgs[0].items() | list }}", False),
    ("globals", "{{ range(3) | list }}|{{ range(1, 10, 3) | list }}|{{ range(5, 0, -2) | list }}|{% set dd = dict(a=1, b='x') %}{{ dd }}|{{ dict(dd, c=3) }}|{{ namespace(a=1).a }}", False),
    ("strftime_type", "{{ strftime_now('%Y') | length }}{{ strftime_now('%d %b %Y') is string }}", False),
    ("generation_block", "{% for m in msgs %}{% generation %}[{{ m.role }}]{% endgeneration %}{% endfor %}", False),
    # errors at render time
    ("err_raise", "before {{ raise_exception('Custom failure: ' ~ 42) }} after", True),
    ("err_undefined_attr", "{{ undefined_var.attr }}", True),
    ("err_undefined_item", "{{ undefined_var['k'] }}", True),
    ("err_undefined_add", "{{ nothing + 'a' }}", True),
    ("err_missing_key_add", "{{ d.missing ~ 'ok' }}{{ d.missing + 'x' }}", True),
    ("err_int_plus_str", "{{ 1 + 'a' }}", True),
    ("err_str_plus_int", "{{ 'a' + 1 }}", True),
    ("err_append", "{% set x = [] %}{{ x.append(1) }}", True),
    ("err_set_attr", "{% set x = [] %}{% set x.y = 1 %}", True),
    ("err_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", True),
    ("err_tojson_undefined", "{{ nothing | tojson }}", True),
    ("err_call_undefined", "{{ foo() }}", True),
    ("err_compare", "{{ 1 < 'a' }}", True),
    ("err_ns_underscore", "{% set ns = namespace() %}{% set ns._x = 1 %}", True),
    ("err_not_iterable", "{% for x in 5 %}{% endfor %}", True),
    ("err_div_zero", "{{ 1 // 0 }}", True),
    # syntax errors (only the line number and that it is a syntax error are compared)
    ("syn_unknown_filter", "line1\n{{ x | foo }}", False),
    ("syn_unknown_test", "{{ x is foo }}", False),
    ("syn_unclosed_if", "{% if x %}\nabc", False),
    ("syn_wrong_end", "{% for x in y %}\n{% endif %}", False),
    ("syn_bad_expr", "a\nb\n{{ 1 + }}", False),
    ("syn_unknown_tag", "{% frobnicate %}", False),
    ("syn_unclosed_var", "{{ x ", False),
    ("syn_unclosed_string", "{{ 'abc }}", False),
    ("syn_break_outside", "{% break %}", False),
]


def make_snippets():
    from transformers.utils.chat_template_utils import _compile_jinja_template

    out = []
    for name, source, check_message in SNIPPETS:
        case = {"name": name, "template": source}
        context = {"messages": [], "add_generation_prompt": False, "tools": None, "documents": None, **SNIPPET_CONTEXT}
        try:
            case["expected"] = _compile_jinja_template(source).render(**context)
        except jinja2.exceptions.TemplateSyntaxError as e:
            case["error"] = {"type": type(e).__name__, "message": e.message, "syntax": True, "line": e.lineno}
        except Exception as e:
            raised = type(e) is jinja2.exceptions.TemplateError
            case["error"] = {"type": type(e).__name__, "message": str(e), "syntax": False, "raised": raised}
        if "error" in case:
            case["error"]["check_message"] = check_message
        out.append(case)
    return out


def make_tokenizer(name):
    specials = SPECIAL_TOKENS[name]
    vocab = {"<unk_placeholder>": 0}
    for tok in specials.values():
        vocab.setdefault(tok, len(vocab))
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk_placeholder>"))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
    tok.chat_template = TEMPLATE_SOURCES[name][1]
    return tok


def render(tok, conversation, add_generation_prompt, tools, variables):
    try:
        out = tok.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=add_generation_prompt, tools=tools, **variables
        )
        return {"expected": out}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception raises exactly TemplateError; Jinja's own errors are subclasses of it.
        raised = type(e) is jinja2.exceptions.TemplateError
        return {"error": {"type": type(e).__name__, "message": str(e), "raised": raised}}
    except Exception as e:  # e.g. TypeError from Python operators inside the template
        return {"error": {"type": type(e).__name__, "message": str(e), "raised": False}}


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "text", "templates")
    os.makedirs(out_dir, exist_ok=True)
    templates = {}
    cases = []
    for name, (family, template) in TEMPLATE_SOURCES.items():
        tok = make_tokenizer(name)
        variables = dict(tok.special_tokens_map)
        extra = EXTRA_VARIABLES.get(name, {})
        templates[name] = {"family": family, "template": template, "variables": {**variables, **extra}}
        conv_names = [c for c in CONVERSATIONS if name in SPECIAL_CONVERSATIONS.get(c, [name])]
        for conv in conv_names:
            for agp in (False, True):
                tools = TOOLS if conv == "tool_calls" else None
                case = {"template": name, "conversation": conv, "add_generation_prompt": agp, "tools": tools is not None}
                case.update(render(tok, CONVERSATIONS[conv], agp, tools, extra))
                cases.append(case)
    doc = {
        "generator": "scripts/make_template_fixtures.py with transformers %s, jinja2 %s"
        % (transformers.__version__, jinja2.__version__),
        "templates": templates,
        "conversations": CONVERSATIONS,
        "tools": TOOLS,
        "cases": cases,
    }
    path = os.path.join(out_dir, "chat_templates.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    snippets = make_snippets()
    spath = os.path.join(out_dir, "jinja_snippets.json")
    with open(spath + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"context": SNIPPET_CONTEXT, "snippets": snippets}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(spath + ".tmp", spath)
    print("%d interpreter snippets -> %s" % (len(snippets), spath), file=sys.stderr)
    n_err = sum(1 for c in cases if "error" in c)
    print("%d templates, %d cases (%d raising) -> %s" % (len(templates), len(cases), n_err, path), file=sys.stderr)


if __name__ == "__main__":
    main()
