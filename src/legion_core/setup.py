"""legion_core: an ament_python package that is also pip-installable."""
from setuptools import find_packages, setup

package_name = 'legion_core'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    # Hydra configs (a link to the workspace's config/train) and the task descriptions travel with
    # the package so that a plain pip install can train.
    package_data={package_name: ['config/**/*.yaml', 'data/*.yaml', 'data/intents/*.yaml',
                                 'data/policies/*/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest', 'hypothesis']},
    zip_safe=False,
    maintainer='LEGION-ROS developers',
    maintainer_email='legion-ros@users.noreply.github.com',
    description='LEGION lifelong RL core: language, VAE + DPMM task inference, SAC, training.',
    license='MIT',
    entry_points={
        'console_scripts': ['legion = legion_core.cli.main:main'],
        'legion.commands': [
            'doctor = legion_core.cli.doctor:register',
            'train = legion_core.cli.train:register',
            'eval = legion_core.cli.evaluate:register',
            'report = legion_core.cli.report:register',
            'bench = legion_core.cli.bench:register',
        ],
        'legion.benchmarks': [
            'train = legion_core.cli.bench_train:register',
            'learn = legion_core.cli.bench_learn:register',
            'solve = legion_core.cli.bench_solve:register',
        ],
        'legion.doctor': [
            'core = legion_core.cli.doctor:core_checks',
        ],
    },
)
