"""The Automate export layout of a datastore's YAML files (domain,
namespace, class, method, instance), shared by the test datastores'
generators (crash, hostile, methods): each function returns one file's
text; the generator writes it where it belongs."""

# The 19 keys of a schema field (and of a method input), in export order.
KEYS = ['aetype', 'name', 'display_name', 'datatype', 'priority', 'owner',
        'default_value', 'substitute', 'message', 'visibility', 'collect',
        'scope', 'description', 'condition', 'on_entry', 'on_exit', 'on_error',
        'max_retries', 'max_time']


def q(v):
    """A scalar as Psych writes it after `key:` (with its leading space;
    nothing for None)."""
    if v is None: return ''
    if isinstance(v, bool): return ' ' + ('true' if v else 'false')
    if isinstance(v, int): return ' ' + str(v)
    s = str(v)
    if s == '': return " ''"
    if s.lstrip('-').isdigit(): return " '" + s + "'"
    if s[0] in '/$.*&!%@`"\'#{[|>' or ': ' in s or s.startswith('- ') or s in ('true','false','null','yes','no'):
        return ' "' + s.replace('\\','\\\\').replace('"','\\"') + '"'
    return ' ' + s


def field(f, prio):
    """One schema field (a dict of the keys that differ from the
    defaults) at priority `prio`, without a final newline."""
    d = {'aetype': None, 'datatype': 'string', 'priority': prio, 'substitute': True, 'message': 'create'}
    d.update(f)
    out = ['  - field:']
    for k in KEYS:
        out.append('      %s:%s' % (k, q(d.get(k))))
    return '\n'.join(out)


def schema(fields):
    """The fields, numbered from priority 1, one line each."""
    return ''.join(field(f, i + 1) + '\n' for i, f in enumerate(fields))


def domain_yaml(name, description, priority):
    return f'''---
object_type: domain
version: 1.0
object:
  attributes:
    name: {name}
    description: {description}
    display_name:
    priority: {priority}
    enabled: true
    tenant_id: 1
    source: user
    top_level_namespace:
'''


def namespace_yaml(name):
    return f'''---
object_type: namespace
version: 1.0
object:
  attributes:
    name: {name}
    description:
    display_name:
    priority:
    enabled:
'''


def class_yaml(name, fields_text, description=''):
    """A class whose schema is `fields_text` (lines)."""
    return f'''---
object_type: class
version: 1.0
object:
  attributes:
    description:{' ' + description if description else ''}
    display_name:
    name: {name}
    type:
    inherits:
    visibility:
    owner:
  schema:
{fields_text}'''


def method_yaml(name, language='rhai', location='inline', embedded='', inputs=' []'):
    """A method; `embedded` and `inputs` are written as they are after
    `location: ...` and `inputs:`."""
    return f'''---
object_type: method
version: 1.0
object:
  attributes:
    name: {name}
    display_name:
    description:
    scope: instance
    language: {language}
    location: {location}{embedded}
  inputs:{inputs}
'''


def instance_yaml(name, values):
    """An instance with the field values `values` ((name, value) pairs; a
    dict value sets several keys of the field)."""
    def one(k, v):
        if isinstance(v, dict):
            return f'\n  - {k}:' + ''.join(f'\n      {kk}:{q(vv)}' for kk, vv in v.items())
        return f'\n  - {k}:\n      value:{q(v)}'
    vals = ''.join(one(k, v) for k, v in values)
    return f'''---
object_type: instance
version: 1.0
object:
  attributes:
    display_name:
    name:{q(name)}
    inherits:
    description:
  fields:{vals if vals else ' []'}
'''
