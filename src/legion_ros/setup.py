"""legion_ros: an ament_python package that is also pip-installable."""
from setuptools import find_packages, setup

package_name = 'legion_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest']},
    zip_safe=False,
    maintainer='LEGION-ROS developers',
    maintainer_email='legion-ros@users.noreply.github.com',
    description='Thin rclpy nodes, the graph descriptions and the graph runner of LEGION-ROS.',
    license='MIT',
    entry_points={
        # Installed into lib/legion_ros by setup.cfg, where `ros2 run` and launch_ros look.
        'console_scripts': [
            'instruction = legion_ros.nodes.instruction:main',
            'task_inference = legion_ros.nodes.task_inference:main',
            'policy = legion_ros.nodes.policy:main',
            'real2sim = legion_ros.nodes.real2sim:main',
            'sim2real = legion_ros.nodes.sim2real:main',
            'decision_path = legion_ros.nodes.decision_path:main',
            'sim_bridge = legion_ros.nodes.sim_bridge:main',
            'trainer = legion_ros.nodes.trainer:main',
            'recorder = legion_ros.nodes.recorder:main',
            'bench_loop_floor = legion_ros.bench_loop:floor_main',  # `legion bench loop --floor`
        ],
        'legion.commands': [
            'launch = legion_ros.cli:register_launch',
            'sim = legion_ros.cli:register_sim',
            'instruct = legion_ros.cli:register_instruct',
        ],
        'legion.benchmarks': [
            'loop = legion_ros.cli:register_bench_loop',
            'language = legion_ros.cli:register_bench_language',
        ],
        'legion.doctor': [
            'ros = legion_ros.doctor:checks',
        ],
        'pytest11': ['legion_ros = legion_ros.testing.pytest_plugin'],
    },
)
